"""What the teaching widgets share: their front end, picture input and encoding (the sweeps run on widgets.runner)."""
from __future__ import annotations

import io
import pathlib
import time
from typing import Any

import anywidget
import numpy as np
import torch
import traitlets as t
from PIL import Image

from ...core import load_pipeline
from ...core.families import adapter_for, family_for, is_generic
from ...core.picture_file import open_picture
from ...core.pipe_decoder import encode_picture
from ...core.pipe_attrs import model_name, speaks_shapes
from ...shapes import parse_caption, render
from ..frames import encode_live, encode_lossless
from ..assets import module, stylesheet

_HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_SHAPES_CAPTION = "big red circle on the left, white background"
DEFAULT_PROMPT_OTHER = "a lighthouse on a cliff at dusk"


class TeachingWidget(anywidget.AnyWidget):
    """One ES module and one stylesheet for every teaching widget; `_kind` picks the view."""

    _esm = module(_HERE / "teaching.js")
    _css = stylesheet(_HERE / "teaching.css")
    _kind = t.Unicode("").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    note = t.Unicode("").tag(sync=True)  # a sentence for the learner under the title (or why something is missing)


def resolve_pipe(pipe: Any) -> Any:
    """pipe=None means the embedded model, as everywhere in nbdiffuse."""
    return load_pipeline(pipe)


def is_shapes(pipe: Any) -> bool:
    return speaks_shapes(pipe)


def default_prompt(pipe: Any) -> str:
    return DEFAULT_SHAPES_CAPTION if is_shapes(pipe) else DEFAULT_PROMPT_OTHER


def model_label(pipe: Any) -> str:
    return model_name(pipe, type(pipe).__name__)


def as_image(image: Any, name: str = "image") -> Image.Image:
    """A PIL image from a PIL image, a file path, PNG/JPEG bytes, an HxWx3 array, or a shapes caption."""
    if image is None:
        return render(DEFAULT_SHAPES_CAPTION, seed=0)
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return open_picture(image, name)
    if isinstance(image, pathlib.Path) or (isinstance(image, str) and pathlib.Path(image).suffix.lower()
                                           in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")):
        return open_picture(image, name)  # core/picture_file.py: a missing file is a ValueError there too
    if isinstance(image, str):
        # Anything else that is text is a shapes caption: the learner names the picture to draw.
        if parse_caption(image).unknown_words:
            raise ValueError(f"{name}={image!r} is neither a picture file nor a shapes caption "
                             f"(unknown words: {', '.join(parse_caption(image).unknown_words)})")
        return render(image, seed=0)
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            array = (np.clip(array.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
        if array.ndim == 2:
            array = np.stack([array] * 3, -1)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"{name} array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        return Image.fromarray(array[..., :3])
    raise TypeError(f"{name} must be None, a PIL image, a file path, PNG/JPEG bytes, an HxWx3 array or a shapes "
                    f"caption; got {type(image).__name__}")


def model_size(pipe: Any) -> tuple[int, int]:
    """(width, height) the pipeline makes by default: pictures go through its VAE at this size."""
    if is_generic(pipe):  # a pipeline outside the known families: its own sample size, where it says one
        size = adapter_for(pipe).default_size()
        if size is None:
            raise ValueError(f"pipe: {type(pipe).__name__} names no default picture size (no sample_size in its "
                             "denoiser's config), which this lesson needs to run pictures through its VAE")
        height, width = size
    else:
        height, width = family_for(pipe).default_size()
    return width, height


def to_tensor(picture: Image.Image) -> torch.Tensor:
    """PIL -> (1, 3, H, W) float in [-1, 1]."""
    array = np.asarray(picture.convert("RGB"), np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def vae_encode(pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] -> (1, C, h, w) latents in the space the pipeline denoises (the mean, no sampling)."""
    return encode_picture(pipe, pixels)


def lossless(picture: Image.Image | np.ndarray) -> bytes:
    """A picture for the browser, without loss: frames.encode_lossless, or PNG for grayscale."""
    if isinstance(picture, Image.Image) and picture.mode == "L":  # grayscale tiles: a third of the bytes
        buffer = io.BytesIO()
        picture.save(buffer, "PNG", compress_level=3)
        return buffer.getvalue()
    return encode_lossless(picture)


def jpeg(picture: Image.Image) -> bytes:
    return encode_live(np.asarray(picture.convert("RGB")), quality=88)


def fit_for_display(picture: Image.Image, longest: int) -> Image.Image:
    """Shrink (never enlarge: the browser upscales crisply) so saved notebooks stay light."""
    if max(picture.size) <= longest:
        return picture
    scale = longest / max(picture.size)
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.LANCZOS)


class Throttle:
    """At most one call per `interval` seconds (the last one always goes through via flush)."""

    def __init__(self, interval: float = 0.1):
        self.interval, self._last = interval, -1e9

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False
