"""Jupyter widgets on top of nbdiffuse.core (which never imports them)."""
from .explorer import Explorer
from .mask_pad import MaskPad
from .sketch import SketchPad
from .sweep_view import SweepView

__all__ = ["Explorer", "MaskPad", "SketchPad", "SweepView"]
