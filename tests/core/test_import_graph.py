"""The package's import graph: no circle anywhere in it, and the core never imports the widgets.

Every import counts, at the top of a module or inside a function (an import inside a function is
a circle put off until it runs, not gone). Imports under `if TYPE_CHECKING:` never run and are
left out. The graph is read from the source with `ast`; nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbdiffuse

ROOT = Path(nbdiffuse.__file__).resolve().parent
PACKAGE = "nbdiffuse"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST):
    """Every Import / ImportFrom node, top level or in a function, outside `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported(module: str, is_package: bool, node: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules an import statement loads (a name imported from a package may be a submodule)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    found = set()
    for alias in node.names:  # `from .x import y`: y is the submodule x.y where there is one, else a name of x
        target = f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix
        if target in modules:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in ROOT.rglob("*.py")}
    modules = set(files)
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = set()
        for node in runtime_imports(tree):
            edges |= imported(module, path.name == "__init__.py", node, modules)
        graph[module] = edges - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "nbdiffuse.core.trace" in graph["nbdiffuse.core"]
    assert "nbdiffuse.core.run" in graph["nbdiffuse.core.trace"]
    # shapes reaches the core only from inside functions: those edges are in the graph too
    assert "nbdiffuse.core.trace" in graph["nbdiffuse.shapes.approx"]


def test_no_import_circle_in_the_package():
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_core_never_imports_the_widgets():
    graph = import_graph()
    bad = sorted((m, w) for m, edges in graph.items() if m.startswith(f"{PACKAGE}.core")
                 for w in edges if w.startswith(f"{PACKAGE}.widgets"))
    assert bad == []
