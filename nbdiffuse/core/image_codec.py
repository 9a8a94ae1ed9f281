"""Pictures as standard image bytes (WebP, JPEG, PNG) for trajectory files, and reading them back safely.

A saved run carries each step's full-VAE picture (core/saved_frames.py); encode_picture picks, per
picture, the first encoding of a ladder that stays within STORED_MAE of it, measured by decoding the
candidate. Lossy WebP is the smallest on pictures a trained model makes but keeps colour at half
resolution (4:2:0), which on noise-like pictures (random-weight test models) costs ~20 of 255;
JPEG with full-resolution colour (4:4:4) is twice WebP's bytes on photos but holds noise closer;
lossless WebP always holds. Measured here (Pillow 13, libwebp 1.6), bytes and mean error of 255:

- shapes model, 64 x 64, x0 frames: WebP q90 544 B / 1.6, JPEG 4:4:4 q90 1.6 KB / 1.3, lossless
  WebP 3.0-3.7 KB; its x_t frames (noisier) 1.3 KB / 3.9 as WebP, 2.6 KB / 2.7 as JPEG q90
- random-weight SD, 64 x 64 noise: WebP q90 3.1 KB / 19, JPEG q90 6.1 KB / 6.4, q95 8.1 KB / 3.3,
  lossless 11.9 KB
- photos at 512 x 512: WebP q90 57-85 KB / 2.2-3.3, JPEG q90 92-132 KB / 1.7-2.4, lossless 340-450 KB;
  at 1024 x 1024 (upscaled, so smoother than a model's own) WebP q90 124-174 KB / 1.5-1.9
"""
from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, features

FORMATS = ("WEBP", "JPEG", "PNG")  # what a trajectory file's pictures may be; nothing else is even parsed
STORED_MAE = 3.0  # of 255: the most a stored picture may differ from the decoded one, on average
_WEBP = features.check("webp")
_LADDER = ((("WEBP", {"quality": 90}),) if _WEBP else ()) + (
    ("JPEG", {"quality": 90, "subsampling": 0}), ("JPEG", {"quality": 95, "subsampling": 0}))


def encode_picture(picture: Image.Image | np.ndarray, limit: float = STORED_MAE) -> bytes:
    """The first of lossy WebP q90, JPEG 4:4:4 q90 and q95 whose decoded picture is within `limit` of
    `picture` (mean absolute error of 255), else lossless WebP (PNG where Pillow lacks WebP)."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture, np.uint8))
    image = image.convert("RGB")
    pixels = np.asarray(image, np.int16)
    for fmt, options in _LADDER:
        data = save_image(image, fmt, **options)
        if float(np.abs(np.asarray(decode_picture(data), np.int16) - pixels).mean()) <= limit:
            return data
    # method 0: lossless WebP's fastest; its slower methods save ~20% on the rare picture that gets here
    if _WEBP:
        return save_image(image, "WEBP", lossless=True, method=0, quality=0)
    return save_image(image, "PNG", compress_level=6)


def check_picture(data: Any, size: tuple[int, int]) -> str:
    """The format of `data` ("WEBP", "JPEG" or "PNG") after reading only its header; ValueError when it is
    none of those or declares another size than `size` (width, height), before any pixel is decoded, so a
    small file that claims a huge picture (a decompression bomb) is refused without being expanded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"must be image bytes, got {type(data).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below decides
            with Image.open(io.BytesIO(bytes(data)), formats=FORMATS) as image:
                fmt, declared = image.format, image.size
    except Image.DecompressionBombError:
        raise ValueError(f"declares a picture of over {2 * Image.MAX_IMAGE_PIXELS} pixels, not the run's "
                         f"{size[0]} x {size[1]}") from None
    except Exception as exc:  # Pillow raises many kinds (UnidentifiedImageError, SyntaxError, struct.error...)
        raise ValueError(f"is not PNG, WebP or JPEG bytes ({len(data)} bytes starting {bytes(data[:12])!r}: "
                         f"{type(exc).__name__})") from None
    if tuple(declared) != tuple(size):
        raise ValueError(f"declares a {declared[0]} x {declared[1]} picture, not the run's {size[0]} x {size[1]}")
    return fmt


def decode_picture(data: bytes) -> Image.Image:
    """Image bytes (one of FORMATS) -> an RGB PIL image; ValueError when they do not decode."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            image.load()
            return image.convert("RGB")
    except Exception as exc:
        raise ValueError(f"image bytes do not decode ({type(exc).__name__}: {exc})") from None


def save_image(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """A PIL image saved as `fmt` with Pillow's `options`, as bytes (the Explorer's frames use it too)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
