"""What a step can be shown as, with which decoder, and at what size.

The views are x0 (the model's guess of the clean picture) and xt (the noisy latent it denoises);
the decoders are how latents become a picture (core/decode.py, core/tiny_decoder.py, or the frame
a saved run carries).
"""
from __future__ import annotations

from typing import Any

from PIL import Image

from .validate import MAX_PICTURE_SIDE, show_value

VIEWS = ("x0", "xt")
# "auto": the saved frame (the model's own VAE picture, carried by a loaded run), else the full VAE
# when the pipeline is attached, else approx.
DECODERS = ("auto", "approx", "full", "tiny")


def _side(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_PICTURE_SIDE


def resize(picture: Image.Image, size: Any, output: tuple[int, int]) -> Image.Image:
    """`picture` at `size`: "output" (the run's (width, height) `output`), "latent" (as decoded), a long side, or (w, h)."""
    if size == "latent" or size is None:
        return picture
    if size == "output":
        target = (int(output[0]), int(output[1]))
    elif _side(size):
        scale = size / max(picture.size)
        target = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(map(_side, size)):
        target = (int(size[0]), int(size[1]))
    else:
        # bounded: size=20000 built a 1.2 GB picture
        raise ValueError(f"size must be 'output', 'latent', a whole number of pixels from 1 to {MAX_PICTURE_SIDE} (the long "
                         f"side) or (width, height) of such numbers; got {show_value(size)}")
    if picture.size == target:
        return picture
    # Latent-resolution previews are upscaled with nearest neighbour: crisp, and honest about the grid.
    return picture.resize(target, Image.NEAREST if picture.width < target[0] else Image.LANCZOS)
