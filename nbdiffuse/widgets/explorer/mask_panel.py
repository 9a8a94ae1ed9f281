"""The Explorer's inpainting mask (core/inpaint.py), for an inpainting pipeline (`nbd.load_pipeline(..., inpaint=True)`).

`inpaints`: the pipeline repaints where a mask is white (the "Mask…" button shows only then); the mask is set with
`ex.start_from(picture, mask=...)` or uploaded beside the start picture, checked against that picture at once, and
goes with every Generate that uses the picture. The start picture's thumbnail shows the kept part dimmed;
`mask_share` is the share of the picture the model repaints (0 without a mask).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t
from PIL import Image

from ...core.inpaint import WHITE, check_mask, share, takes_mask
from ...core.picture_file import open_picture
from .. import start_picture

KEPT = 0.35  # the thumbnail's brightness where the mask keeps the picture


def mask_traits(pipe: Any) -> dict[str, Any]:
    """Whether `pipe` inpaints (no pipeline: it does not)."""
    return {"inpaints": pipe is not None and takes_mask(pipe)}


def masked_thumbnail(picture: Image.Image, mask: Image.Image | None) -> bytes:
    """The start picture's thumbnail; with a mask, the kept part dimmed so that the part repainted stands out."""
    if mask is None:
        return start_picture.thumbnail(picture)
    pixels = np.asarray(picture.convert("RGB"), np.float32)
    repaint = (np.asarray(mask) >= WHITE)[..., None]
    shown = np.where(repaint, pixels, pixels * KEPT)
    return start_picture.thumbnail(Image.fromarray(shown.round().astype(np.uint8)))


class MaskPanel(t.HasTraits):
    """The mask traits and their Python side; a base of the Explorer (widget.py)."""

    inpaints = t.Bool(False).tag(sync=True)
    mask_share = t.Float(0.0).tag(sync=True)
    _start_mask: Image.Image | None = None

    def _set_mask(self, mask: Any, picture: Image.Image | None) -> None:
        """Check `mask` (PIL image, array, file path or image bytes; None: no mask) against the start picture
        and keep it; the thumbnail shows it."""
        if isinstance(mask, (bytes, bytearray, memoryview)):
            mask = open_picture(bytes(mask), "mask")
        checked = None if mask is None else check_mask(mask, picture, self.pipe)
        self._start_mask = checked
        self.mask_share = 0.0 if checked is None else share(checked)
        if picture is not None:
            self.start_thumb = masked_thumbnail(picture, checked)

    def mask_from(self, mask: Any) -> None:
        """The mask of the next runs (white repaints, black keeps), for the start picture set by start_from()."""
        if getattr(self, "_start_source", None) is None:
            raise ValueError("mask: set the start picture first (ex.start_from(picture, mask=...)); a mask covers it")
        self._set_mask(mask, start_picture.picture_of(self._start_source))
        if self.error.startswith("Cannot start: mask"):  # the error this mask answers
            self._clear_error()

    def _mask_for_run(self, picture: Image.Image) -> dict[str, Any]:
        """Generate's mask_image for a run from the start picture: the one set, or a clear error where the
        pipeline needs one."""
        if not self.inpaints:
            return {}
        if self._start_mask is None:
            raise ValueError(f"mask: {type(self.pipe).__name__} repaints where a mask is white; upload one with "
                             "\"Mask…\" beside the start picture, or ex.start_from(picture, mask=...)")
        if self._start_mask.size != picture.size:  # a SketchPad resized since
            raise ValueError(f"mask: {self._start_mask.width}x{self._start_mask.height} and the start picture is "
                             f"now {picture.width}x{picture.height}; set a mask of its size")
        return {"mask_image": self._start_mask}
