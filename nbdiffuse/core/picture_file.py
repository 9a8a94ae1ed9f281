"""The one door through which a picture file or picture bytes from the user come in.

trace(image=), Explorer.generate(image=) / start_from, a SketchPad's load and the teaching
widgets all read pictures here, so each gets the same guarantees:

- only the formats listed in FORMATS are even parsed (no format that hands the file to an outside
  program, as EPS does to Ghostscript);
- the size is read from the header and checked (at most validate.MAX_SIDE pixels on EACH side)
  before a pixel is decoded, so a small file that declares 60000 x 60000 pixels (a decompression
  bomb) or a 6000 x 8 strip is refused without being expanded;
- whatever Pillow raises (DecompressionBombError, UnidentifiedImageError, a truncated file's
  OSError, SyntaxError, struct.error...) comes out as one ValueError naming the parameter, the
  value (shortened) and what is allowed.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
from PIL import Image

from .validate import MAX_SIDE, show_value

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
ALLOWED = f"a PNG, JPEG, WebP, GIF, BMP or TIFF picture of at most {MAX_SIDE} x {MAX_SIDE} pixels"


def _what(source: Any) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source[:12])
        return f"{len(source)} bytes starting {data!r}"
    return show_value(str(source))


def open_picture(source: Any, name: str = "image") -> Image.Image:
    """A file path or image bytes -> an RGB PIL image; ValueError naming `name` when it is not one."""
    try:
        stream = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else \
            os.path.expanduser(os.fspath(source))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_sides decides
            image = Image.open(stream, formats=FORMATS)  # reads the header only
    except Exception as exc:
        reason = _reason(exc)
    else:
        with image:
            check_sides(image.size, name, source)
            try:
                image.load()
                return image.convert("RGB")
            except Exception as exc:  # a truncated or corrupt body
                reason = _reason(exc)
    raise ValueError(f"{name}: could not read {_what(source)}, not a picture Pillow can read here ({reason}); "
                     f"allowed: {ALLOWED}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"it declares over {2 * Image.MAX_IMAGE_PIXELS} pixels"
    if isinstance(exc, FileNotFoundError):
        return "it is not an existing picture file"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    # UnidentifiedImageError, truncated files, SyntaxError, struct.error, OSError...
    return f"{type(exc).__name__}: {show_value(str(exc))}"


def check_sides(size: tuple[int, int], name: str, source: Any = None) -> None:
    """ValueError when a picture of `size` (width, height) has a side over MAX_SIDE pixels (or none)."""
    width, height = int(size[0]), int(size[1])
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        what = "a" if source is None else f"{_what(source)} is a"
        raise ValueError(f"{name}: {what} {width} x {height} picture: each side must be 1 to {MAX_SIDE} pixels "
                         f"(resize it first); allowed: {ALLOWED}")


def limit_sides(image: Any, name: str = "image") -> None:
    """The side check for a picture given in memory (a PIL image or an HxW(xC) array); others pass."""
    if isinstance(image, Image.Image):
        check_sides(image.size, name)
    elif isinstance(image, np.ndarray) and image.ndim in (2, 3):
        check_sides((image.shape[1], image.shape[0]), name)
