"""A mask pad: paint, over the start picture, where an inpainting pipeline repaints (core/inpaint.py).

    ex.start_from(picture)
    pad = ex.mask_pad()     # show it, paint over the part to repaint, press Generate

The pad shows the start picture with the part to repaint tinted; "repaint" paints, "keep" takes back. Like the
SketchPad it is, each stroke is drawn on a Pillow mask in the kernel too, so `pad.image` (the mask at the picture's
size: white repaints, black keeps) never waits for the browser.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..core.img2img import check_image
from ..core.inpaint import WHITE
from .sketch import SketchPad

REPAINT = (236, 64, 122)  # the tint of the part the model repaints, on the pad and in the Explorer's thumbnail
TINT = 0.5
PAD_SIDE = 256  # the longer side of the pad, in screen pixels


def mask_view(picture: Image.Image, mask: Image.Image | None) -> Image.Image:
    """`picture` with the part `mask` repaints (white, 128 and up) tinted; as it is without a mask."""
    picture = picture.convert("RGB")
    if mask is None:
        return picture
    if mask.size != picture.size:
        mask = mask.resize(picture.size, Image.NEAREST)
    pixels = np.asarray(picture, np.float32)
    repaint = (np.asarray(mask.convert("L")) >= WHITE)[..., None]
    shown = np.where(repaint, pixels * (1 - TINT) + np.asarray(REPAINT, np.float32) * TINT, pixels)
    return Image.fromarray(shown.round().astype(np.uint8))


class MaskPad(SketchPad):
    """`MaskPad(picture)`: a SketchPad whose drawing is a mask over `picture` (white: repaint, black: keep)."""

    def __init__(self, picture: Any, mask: Any = None):
        self.picture = check_image(picture, "picture")
        scale = PAD_SIDE / max(self.picture.size)
        width, height = (max(16, min(2048, round(side * scale))) for side in self.picture.size)
        self._under: Image.Image | None = None
        super().__init__(width=width, height=height, background="black", colors=("white", "black"))
        self._under = self.picture.resize(self.size, Image.LANCZOS)
        self.color.options = [("repaint", "white"), ("keep", "black")]
        self.color.description = "Paint"
        self.brush.value = max(2, max(self.size) // 8)  # a wide brush: a mask marks regions, not lines
        self.canvas.on_mouse_up(lambda *_: self._paint())  # the stroke's true look, once it ends
        if mask is not None:
            self.load(mask)
        self._paint()

    @property
    def image(self) -> Image.Image:
        """The mask at the picture's size: white where the model repaints, black where the picture stays."""
        return self._picture.convert("L").resize(self.picture.size, Image.NEAREST)

    def load(self, image: Any) -> None:
        """Start from a mask (PIL image, array or file path), resized to the pad."""
        if isinstance(image, np.ndarray) and image.dtype == bool:
            image = image.astype(np.uint8) * 255
        mask = check_image(image, "mask").convert("L").resize(self.size, Image.NEAREST)
        self._remember()
        self._picture = mask.point(lambda v: 255 if v >= WHITE else 0).convert("RGB")
        self._paint()

    def clear(self, background: str = "black") -> None:
        """Keep the whole picture again (an empty mask)."""
        super().clear(background)

    def _stroke_style(self, rgb: tuple[int, int, int]) -> str:
        """While the mouse moves: the repaint tint, or grey for keep (the picture shows again when the stroke ends)."""
        r, g, b = REPAINT if rgb[0] >= WHITE else (128, 128, 128)
        return f"rgba({r}, {g}, {b}, {TINT})"

    def _paint(self) -> None:
        if self._under is None:  # SketchPad's own first paint, before the picture is known
            return
        self.canvas.put_image_data(np.asarray(mask_view(self._under, self._picture)), 0, 0)
