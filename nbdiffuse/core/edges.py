"""An edge map of any picture: what an edge or outline ControlNet reads (white lines on black).

Pillow and numpy only, no model: the Sobel gradient of each colour channel, the strongest channel
at each pixel (so a red shape on a green ground of the same brightness still has an edge), kept
where it reaches `threshold` of the picture's strongest edge. `width` thickens the lines (a max
filter), as a pen's stroke is wider than a one-pixel edge.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from .img2img import check_image
from .validate import check_number

SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
MAX_WIDTH = 15  # pixels of line width


def gradient(picture: Image.Image) -> np.ndarray:
    """Per pixel, the largest Sobel gradient magnitude over the colour channels (H x W floats)."""
    rgb = np.asarray(picture, dtype=np.float64) / 255.0
    padded = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    gx = np.zeros_like(rgb)
    gy = np.zeros_like(rgb)
    for i in range(3):
        for j in range(3):
            window = padded[i:i + h, j:j + w]
            gx += SOBEL[i, j] * window
            gy += SOBEL[j, i] * window
    return np.sqrt(gx ** 2 + gy ** 2).max(axis=2)


def edge_map(image: Any, threshold: float = 0.2, width: int = 1) -> Image.Image:
    """The edges of `image` (PIL image, uint8 array or file path) as white lines on black, same size.

    threshold: the share (0 to 1) of the strongest edge an edge must reach to be drawn; width: the
    lines' width in pixels (1 to 15). A picture of one flat colour has no edges: all black.
    """
    picture = check_image(image, "image")
    threshold = check_number("threshold", threshold, 0.0, 1.0)
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"width must be a whole number of pixels from 1 to {MAX_WIDTH}, got {width!r}")
    magnitude = gradient(picture)
    top = float(magnitude.max())
    lines = magnitude >= max(threshold * top, 1e-6) if top > 0 else np.zeros(magnitude.shape, bool)
    out = Image.fromarray((lines * 255).astype(np.uint8), "L")
    if width > 1:
        out = out.filter(ImageFilter.MaxFilter(width if width % 2 else width + 1))
    return out.convert("RGB")


def looks_like_lines(image: Any) -> bool:
    """Whether a picture looks like a control outline (light lines on a dark ground), not a photo or a
    drawing in colour: mostly near-black, and grey (no colour)."""
    rgb = np.asarray(check_image(image, "image"), dtype=np.int16)
    dark = float((rgb.max(axis=2) < 48).mean())
    colour = float((rgb.max(axis=2) - rgb.min(axis=2) > 48).mean())
    return dark >= 0.5 and colour < 0.05
