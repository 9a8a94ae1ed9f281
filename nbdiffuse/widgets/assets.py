"""What a widget ships to the browser: its ES module and its stylesheet, each led by the shared part.

The module starts with frame_decode.js (frames as the kernel encodes them -> bitmaps), then the
parts the widget names (the Explorer's explorer_parts.js); the stylesheet with theme.css (the
light and dark themes).
"""
from __future__ import annotations

import pathlib

_HERE = pathlib.Path(__file__).parent
THEME = _HERE / "theme.css"
FRAME_DECODE = _HERE / "frame_decode.js"


def stylesheet(own: pathlib.Path) -> str:
    return THEME.read_text(encoding="utf-8") + "\n" + own.read_text(encoding="utf-8")


def module(own: pathlib.Path, *parts: pathlib.Path) -> str:
    """The widget's ES module as text (not a path: anywidget keeps path-backed widgets alive, manzt/anywidget#929).

    parts: files of small named functions `own` calls, put between frame_decode.js and `own`."""
    files = (FRAME_DECODE, *parts, own)
    return "\n".join(f.read_text(encoding="utf-8") for f in files)
