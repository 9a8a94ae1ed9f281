"""The Explorer's start picture for image-to-image runs: a picture, a file, an upload or a SketchPad.

A SketchPad is read when Generate is pressed, so the run starts from the drawing as it is then.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..core.img2img import check_image
from ..core.picture_file import open_picture
from .frames import encode_lossless

THUMB_SIDE = 96


def picture_of(source: Any, name: str = "image") -> Image.Image:
    """The RGB picture a start source stands for (a SketchPad's drawing as it is now)."""
    if hasattr(source, "image") and not isinstance(source, (Image.Image, np.ndarray)):
        return check_image(source.image)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return open_picture(source, name)
    return check_image(source)


def thumbnail(picture: Image.Image) -> bytes:
    small = picture.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    return encode_lossless(small)
