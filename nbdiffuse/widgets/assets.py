"""What a widget ships to the browser: its ES module and its stylesheet, each led by the shared parts.

The module starts with frame_decode.js (frames as the kernel encodes them -> bitmaps) and dom.js
(h and svg, the one way every widget makes elements), then the parts the widget names (the
Explorer's small modules, explorer/*.js), then its own file; the stylesheet with theme.css (the
light and dark themes). The files share one module scope: a part defines named functions and
classes, and the files after it use them.
"""
from __future__ import annotations

import pathlib

_HERE = pathlib.Path(__file__).parent
THEME = _HERE / "theme.css"
FRAME_DECODE = _HERE / "frame_decode.js"
DOM = _HERE / "dom.js"
SHARED = (FRAME_DECODE, DOM)


def stylesheet(own: pathlib.Path) -> str:
    return THEME.read_text(encoding="utf-8") + "\n" + own.read_text(encoding="utf-8")


def module(own: pathlib.Path, *parts: pathlib.Path) -> str:
    """The widget's ES module as text (not a path: anywidget keeps path-backed widgets alive, manzt/anywidget#929).

    parts: files of small named functions and classes `own` calls, put between the shared files and `own`."""
    files = (*SHARED, *parts, own)
    return "\n".join(f.read_text(encoding="utf-8") for f in files)
