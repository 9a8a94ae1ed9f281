"""No JavaScript function of the widgets spans more than MAX_LINES lines (a function should fit on a screen).

A small scanner, not a parser: it blanks out comments, strings and template literals, finds function
declarations (`function name(`), functions assigned to names (`name = (...) => {`, `name = function (`)
and class methods (`name(...) {` at the start of a line), and follows the braces to each body's end.
"""
from __future__ import annotations

import pathlib
import re

import pytest

WIDGETS = pathlib.Path(__file__).resolve().parents[2] / "nbdiffuse" / "widgets"
MAX_LINES = 150
KEYWORDS = {"if", "for", "while", "switch", "catch", "function", "return", "with", "else", "do", "try"}

DECLARATION = re.compile(r"\bfunction\s*\*?\s*([A-Za-z_$][\w$]*)?\s*\(")
ASSIGNED = re.compile(r"([A-Za-z_$][\w$]*)\s*[:=]\s*(?:async\s+)?(?:function\b[^(]*\(|(?:\([^()]*\)|[A-Za-z_$][\w$]*)\s*=>)")
METHOD = re.compile(r"^[ \t]*(?:(?:static|async|get|set)\s+)*([A-Za-z_$][\w$]*)\s*\([^()]*\)\s*\{", re.MULTILINE)


def blank_literals(text: str) -> str:
    """`text` with comments, strings and template literals turned into spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
        elif c in "'\"`":
            end = i + 1
            while end < n and text[end] != c:
                end += 2 if text[end] == "\\" else 1
            end = min(end + 1, n)
        else:
            out.append(c)
            i += 1
            continue
        out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
        i = end
    return "".join(out)


def _matching(code: str, start: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at `start` (-1 when it is never closed)."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == open_:
            depth += 1
        elif code[i] == close:
            depth -= 1
            if depth == 0:
                return i
    return -1


def _body_start(code: str, after: int) -> int:
    """The `{` opening the body of a function whose match ends at `after` (just past its "(", "=>" or "{"),
    or -1 for an arrow function with an expression body."""
    last = code[after - 1]
    if last == "{":
        return after - 1
    i = after
    if last == "(":
        i = _matching(code, after - 1, "(", ")") + 1
        arrow = re.match(r"\s*=>", code[i:])
        if arrow:
            i += arrow.end()
    i += len(code[i:]) - len(code[i:].lstrip())
    return i if code[i:i + 1] == "{" else -1


def function_spans(text: str) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of each function in JavaScript `text` (lines count from 1)."""
    code = blank_literals(text)
    starts: dict[int, tuple[str, int]] = {}  # body's "{" -> (name, where the function starts)
    for pattern in (DECLARATION, ASSIGNED, METHOD):
        for m in pattern.finditer(code):
            name = m.group(1) or "(anonymous)"
            if pattern is METHOD and name in KEYWORDS:
                continue
            body = _body_start(code, m.end())
            if body >= 0:
                starts.setdefault(body, (name, m.start(1) if m.group(1) else m.start()))
    spans = []
    for body, (name, begin) in sorted(starts.items()):
        end = _matching(code, body, "{", "}")
        if end < 0:
            raise ValueError(f"unbalanced braces in function {name}")
        spans.append((name, code.count("\n", 0, begin) + 1, code.count("\n", 0, end) + 1))
    return spans


def too_long(text: str, limit: int = MAX_LINES) -> list[str]:
    return [f"{name} (lines {first}-{last}: {last - first + 1})" for name, first, last in function_spans(text)
            if last - first + 1 > limit]


def _synthetic(kind: str, body_lines: int) -> str:
    body = "".join(f"  x += {i}; // {{ not a brace\n" for i in range(body_lines))
    head = {"declaration": "function long(x) {\n", "arrow": "const long = (x) => {\n",
            "method": "class A {\n  long(x) {\n"}[kind]
    tail = "}\n}\n" if kind == "method" else "}\n"
    return f"// before\n{head}{body}  return `${{x}} }}`;\n{tail}"


@pytest.mark.parametrize("kind", ["declaration", "arrow", "method"])
def test_the_scanner_finds_a_long_function(kind):
    # head + 148 body lines + return + closing brace: exactly 151 lines for the declaration and the arrow
    text = _synthetic(kind, MAX_LINES - 2)
    assert [name.split(" ")[0] for name in too_long(text)] == ["long"], function_spans(text)
    assert too_long(_synthetic(kind, MAX_LINES - 3)) == []  # 150 lines: allowed


def test_the_scanner_sees_nested_functions_and_ignores_braces_in_literals():
    text = ("function outer() {\n  const s = '}}}';\n  /* { */\n  function inner(a) {\n    return a;\n  }\n"
            "  const f = (b) => {\n    return `${b}}`;\n  };\n  return inner(f(1));\n}\n")
    spans = {name: (first, last) for name, first, last in function_spans(text)}
    assert spans == {"outer": (1, 11), "inner": (4, 6), "f": (7, 9)}


def test_no_widget_javascript_function_is_longer_than_a_screen():
    files = sorted(WIDGETS.rglob("*.js"))
    assert len(files) >= 10  # the Explorer's parts, the teaching widgets, the shared helpers
    problems = {str(f.relative_to(WIDGETS)): too_long(f.read_text(encoding="utf-8")) for f in files}
    assert not {f: p for f, p in problems.items() if p}, f"functions over {MAX_LINES} lines"
    assert len(function_spans((WIDGETS / "explorer" / "explorer.js").read_text(encoding="utf-8"))) >= 4
