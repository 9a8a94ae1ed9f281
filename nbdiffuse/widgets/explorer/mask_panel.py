"""The Explorer's inpainting mask (core/inpaint.py), for an inpainting pipeline (`nbd.load_pipeline(..., inpaint=True)`).

`inpaints`: the pipeline repaints where a mask is white (the "Mask…" button shows only then); the mask is set with
`ex.start_from(picture, mask=...)`, uploaded beside the start picture, or painted over it (`ex.mask_pad()`, a
MaskPad read at each Generate), checked against that picture, and goes with every Generate that uses the picture.
The start picture's thumbnail tints the part repainted (mask_pad.mask_view); `mask_share` is the share of the
picture the model repaints (0 without a mask).
"""
from __future__ import annotations

from typing import Any

import traitlets as t
from PIL import Image

from ...core.inpaint import check_mask, not_inpainting, share, takes_mask
from ...core.picture_file import open_picture
from .. import start_picture
from ..mask_pad import MaskPad, mask_view


def mask_traits(pipe: Any) -> dict[str, Any]:
    """Whether `pipe` inpaints (no pipeline: it does not)."""
    return {"inpaints": pipe is not None and takes_mask(pipe)}


def masked_thumbnail(picture: Image.Image, mask: Image.Image | None) -> bytes:
    """The start picture's thumbnail; with a mask, the part repainted tinted as the mask pad shows it."""
    return start_picture.thumbnail(mask_view(picture, mask))


class MaskPanel(t.HasTraits):
    """The mask traits and their Python side; a base of the Explorer (widget.py)."""

    inpaints = t.Bool(False).tag(sync=True)
    mask_share = t.Float(0.0).tag(sync=True)
    _start_mask: Image.Image | MaskPad | None = None  # a pad is read at each Generate

    def _set_mask(self, mask: Any, picture: Image.Image | None) -> None:
        """Check `mask` (PIL image, array, file path or image bytes; None: no mask) against the start picture
        and keep it; the thumbnail shows it."""
        if isinstance(mask, (bytes, bytearray, memoryview)):
            mask = open_picture(bytes(mask), "mask")
        checked = None if mask is None else check_mask(mask, picture, self.pipe)
        self._start_mask = checked
        self._show_mask(picture, checked)

    def _show_mask(self, picture: Image.Image | None, mask: Image.Image | None) -> None:
        self.mask_share = 0.0 if mask is None else share(mask)
        if picture is not None:
            self.start_thumb = masked_thumbnail(picture, mask)

    def mask_from(self, mask: Any) -> None:
        """The mask of the next runs (white repaints, black keeps), for the start picture set by start_from()."""
        if getattr(self, "_start_source", None) is None:
            raise ValueError("mask: set the start picture first (ex.start_from(picture, mask=...)); a mask covers it")
        self._set_mask(mask, start_picture.picture_of(self._start_source))
        if self.error.startswith("Cannot start: mask"):  # the error this mask answers
            self._clear_error()

    def mask_pad(self) -> MaskPad:
        """A MaskPad over the start picture, the mask of the next runs: show it, paint the part to repaint, press
        Generate (each stroke shows in the start picture's thumbnail)."""
        if getattr(self, "_start_source", None) is None:
            raise ValueError("mask: set the start picture first (ex.start_from(picture)); the pad paints over it")
        if not self.inpaints:
            raise not_inpainting(self.pipe)
        picture = start_picture.picture_of(self._start_source)
        current = self._start_mask.image if isinstance(self._start_mask, MaskPad) else self._start_mask
        pad = MaskPad(picture, mask=current)
        self._start_mask = pad
        self._show_mask(picture, pad.image)
        pad.canvas.on_mouse_up(lambda *_: self._show_mask(picture, pad.image) if self._start_mask is pad else None)
        return pad

    def _mask_for_run(self, picture: Image.Image) -> dict[str, Any]:
        """Generate's mask_image for a run from the start picture: the one set, or a clear error where the
        pipeline needs one."""
        if not self.inpaints:
            return {}
        if self._start_mask is None:
            raise ValueError(f"mask: {type(self.pipe).__name__} repaints where a mask is white; upload one with "
                             "\"Mask…\" beside the start picture, or ex.start_from(picture, mask=...)")
        mask = self._start_mask.image if isinstance(self._start_mask, MaskPad) else self._start_mask
        if mask.size != picture.size:  # a SketchPad resized since
            raise ValueError(f"mask: {mask.width}x{mask.height} and the start picture is now {picture.width}x"
                             f"{picture.height}; set a mask of its size")
        mask = check_mask(mask, picture, self.pipe)  # a pad painted black everywhere is refused by name
        self._show_mask(None, mask)
        return {"mask_image": mask}
