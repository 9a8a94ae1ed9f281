"""Inpainting: a start picture and a mask; the model repaints where the mask is white and keeps the rest.

diffusers' inpainting pipelines (their __call__ takes image, mask_image and strength: StableDiffusionInpaintPipeline
and its SDXL, SD3, Flux, Qwen-Image, Z-Image, PAG and ControlNet siblings) get the picture and the mask that
trace(image=..., mask_image=...) checked here: SD's, SDXL's, SD3's and Flux's (their ControlNet ones, SD's and SDXL's
PAG ones too) run their family's loop (core/inpaint_loop.py), the others their own loop, watched on the generic path
(core/generic.py).
A denoiser made for inpainting (9 input channels) reads the mask and the masked picture's latents beside x_t; any
other (the embedded model in StableDiffusionInpaintPipeline, an SD checkpoint) is blended: after each step the kept
part of x_t is put back from the picture, noised to the next step's level. x0 is the model's own prediction,
everywhere; the last step's x_t is what the pipeline returns.

`load_pipeline(inpaint=True)` gives a pipeline's inpainting sibling (diffusers' AutoPipelineForInpainting), sharing
its components.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np
from PIL import Image

from .img2img import fingerprint, takes_image
from .picture_file import limit_sides, open_picture
from .pipe_attrs import copy_attrs
from .quiet_logs import without_message
from .validate import show_value

WHITE = 128  # diffusers binarizes a mask at 0.5: a pixel at 128 of 255 or more is repainted


def takes_mask(pipe: Any) -> bool:
    """An inpainting pipeline class: its __call__ takes a start picture, its strength and a mask."""
    try:
        params = inspect.signature(type(pipe).__call__).parameters
    except (TypeError, ValueError):
        return False
    return "mask_image" in params and takes_image(pipe)


def check_mask(mask: Any, image: Image.Image | None, pipe: Any) -> Image.Image | None:
    """trace's mask_image -> a greyscale ("L") picture of the start picture's size (a mask of its shape at another
    scale is resized to it), or None where the pipeline does not inpaint and none was given. White repaints, black
    keeps (diffusers' convention)."""
    name = type(pipe).__name__
    if not takes_mask(pipe):
        if mask is None:
            return None
        raise not_inpainting(pipe)
    if mask is None:
        raise ValueError(f"mask_image: {name} repaints where a mask is white; pass mask_image=... (a picture of the "
                         "start picture's size: white where the model draws anew, black where the picture stays) "
                         "with image=...")
    limit_sides(mask, "mask_image")
    if isinstance(mask, (str, os.PathLike)):
        picture = open_picture(mask, "mask_image").convert("L")
    elif isinstance(mask, Image.Image):
        picture = mask.convert("L")
    elif isinstance(mask, np.ndarray):
        if mask.dtype == bool:
            mask = mask.astype(np.uint8) * 255
        if mask.dtype != np.uint8 or mask.ndim not in (2, 3) or (mask.ndim == 3 and mask.shape[2] not in (1, 3, 4)) \
                or 0 in mask.shape:
            raise ValueError(f"mask_image as an array must be HxW (bool or uint8) or HxWx3 uint8, got shape "
                             f"{mask.shape} dtype {mask.dtype}")
        picture = Image.fromarray(mask[..., 0] if mask.ndim == 3 and mask.shape[2] == 1 else mask).convert("L")
    else:
        raise TypeError(f"mask_image must be a PIL.Image, a numpy array or an image file path, got "
                        f"{type(mask).__name__}")
    if image is not None and picture.size != image.size:
        if abs(picture.width * image.height - picture.height * image.width) > 0.01 * picture.width * image.height:
            raise ValueError(f"mask_image is {picture.width}x{picture.height} and the start picture {image.width}x"
                             f"{image.height}: a mask covers its picture, so give it the picture's size (or its "
                             "shape at another scale)")
        picture = picture.resize(image.size, Image.NEAREST)  # drawn at another scale: brought to the picture's
    if share(picture) == 0.0:
        raise ValueError("mask_image is black everywhere, so nothing would be repainted: paint it white where the "
                         "model should draw anew")
    return picture


def check_crop(pipe: Any, pipe_kwargs: dict) -> None:
    """diffusers' padding_mask_crop inpaints a crop around the mask and pastes it back into the decoded picture, so
    its pipelines refuse it with output_type="latent", which a watched run needs: refused here first, saying so."""
    if pipe_kwargs.get("padding_mask_crop") is not None:
        raise ValueError(f"pipe_kwargs['padding_mask_crop']={show_value(pipe_kwargs['padding_mask_crop'])}: "
                         f"{type(pipe).__name__} inpaints a crop around the mask and pastes it back only into a "
                         "decoded picture, and nbdiffuse records every step's latents (output_type='latent', which "
                         "the pipeline refuses with a crop); leave it out to inpaint the whole picture")


def not_inpainting(pipe: Any) -> ValueError:
    """The error for a mask given to a pipeline that does not inpaint: it names the one that does."""
    return ValueError(f"mask_image: {type(pipe).__name__} does not inpaint (its __call__ takes no mask_image); its "
                      "inpainting pipeline does: nbd.load_pipeline(pipe, inpaint=True)")


def share(mask: Image.Image) -> float:
    """The share of the picture the model repaints (pixels at WHITE or more)."""
    return float((np.asarray(mask) >= WHITE).mean())


def record(mask: Image.Image) -> dict:
    """What a run's params keep of its mask: its size, fingerprint and the share it repaints."""
    return {**fingerprint(mask), "share": round(share(mask), 4)}


def with_inpaint(pipe: Any) -> Any:
    """`pipe`'s inpainting sibling in diffusers, sharing its components (its own attributes copied over); `pipe`
    itself where it inpaints already."""
    from diffusers import AutoPipelineForInpainting

    if takes_mask(pipe):
        return pipe
    try:
        with without_message("should be kept in float32: []", "diffusers.models.modeling_utils"):
            joined = AutoPipelineForInpainting.from_pipe(pipe)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"inpaint=True: {type(pipe).__name__} has no inpainting pipeline in diffusers "
                         f"({show_value(str(exc))})") from None
    joined.set_progress_bar_config(disable=True)
    copy_attrs(pipe, joined)
    return joined
