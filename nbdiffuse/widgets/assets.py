"""What a widget ships to the browser: its ES module and its stylesheet, each led by the shared part.

The module starts with frame_decode.js (frames as the kernel encodes them -> bitmaps), the
stylesheet with theme.css (the light and dark themes).
"""
from __future__ import annotations

import pathlib

_HERE = pathlib.Path(__file__).parent
THEME = _HERE / "theme.css"
FRAME_DECODE = _HERE / "frame_decode.js"


def stylesheet(own: pathlib.Path) -> str:
    return THEME.read_text(encoding="utf-8") + "\n" + own.read_text(encoding="utf-8")


def module(own: pathlib.Path) -> str:
    """The widget's ES module as text (not a path: anywidget keeps path-backed widgets alive, manzt/anywidget#929)."""
    return FRAME_DECODE.read_text(encoding="utf-8") + "\n" + own.read_text(encoding="utf-8")
