"""The stylesheet a widget ships: the shared theme (theme.css) followed by the widget's own rules."""
from __future__ import annotations

import pathlib

THEME = pathlib.Path(__file__).with_name("theme.css")


def stylesheet(own: pathlib.Path) -> str:
    return THEME.read_text(encoding="utf-8") + "\n" + own.read_text(encoding="utf-8")
