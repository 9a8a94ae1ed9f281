"""The Explorer's start picture for image-to-image runs: a picture, a file, an upload or a SketchPad.

A SketchPad is read when Generate is pressed, so the run starts from the drawing as it is then.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..core.families import adapter_for
from ..core.img2img import check_image
from ..core.picture_file import open_picture
from .frames import encode_lossless

THUMB_SIDE = 96


def picture_of(source: Any, name: str = "image") -> Image.Image:
    """The RGB picture a start source stands for (a SketchPad's drawing as it is now)."""
    if hasattr(source, "image") and not isinstance(source, (Image.Image, np.ndarray)):
        return check_image(source.image, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return open_picture(source, name)
    return check_image(source, name)


def thumbnail(picture: Image.Image) -> bytes:
    small = picture.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    return encode_lossless(small)


def pad_size(pipe: Any, options: dict) -> dict:
    """A SketchPad's options, sized for `pipe`'s pictures (at least 256 pixels a side) unless they say a size."""
    options = dict(options)
    if pipe is not None and "width" not in options and "height" not in options:
        h, w = adapter_for(pipe).default_size() or (256, 256)
        scale = max(1, 256 // max(h, w))
        options.update(width=min(2048, max(16, w * scale)), height=min(2048, max(16, h * scale)))
    return options
