"""Image to image: start the reverse process from a picture noised to a chosen level.

As diffusers' img2img pipelines do it: `strength` s in (0, 1] runs the last int(steps * s) of a
`steps`-step schedule. The picture is encoded by the VAE (a sample of its latent distribution,
drawn with the run's generator), noised to the first timestep that runs (add_noise, or
scale_noise for flow-matching schedulers), and denoised from there. strength 1 starts from
(almost) pure noise; strength 0.3 keeps the composition and redraws the details.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .decode import fp32_copy, to_pipeline_space
from .picture_file import limit_sides, open_picture

DEFAULT_STRENGTH = 0.8  # diffusers' img2img default


def check_image(image: Any, name: str = "image") -> Image.Image:
    """A PIL image, an HxWx3 (or HxW) uint8 array, or the path of an image file -> an RGB PIL image.
    `name`: the argument's name in messages (image, control_image)."""
    limit_sides(image, name)  # each side at most MAX_SIDE, as for height/width (core/picture_file.py)
    if isinstance(image, (str, os.PathLike)):
        return open_picture(image, name)
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise ValueError(f"{name} must not be empty, got size {image.size}")
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)) \
                or 0 in image.shape:
            raise ValueError(f"{name} as an array must be HxWx3 (or HxWx4, HxW) uint8, got shape {image.shape} "
                             f"dtype {image.dtype}")
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"{name} must be a PIL.Image, a uint8 numpy array or an image file path, got {type(image).__name__}")


def check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not np.isfinite(strength) \
            or not 0.0 < float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in (0, 1] (the share of the steps that runs), got {strength!r}")
    return float(strength)


def start_step(steps: int, strength: float, rule: str = "truncate") -> int:
    """The first step of the `steps`-step schedule that runs (diffusers' t_start).

    rule "truncate": steps - int(steps * strength), as the SD and SDXL img2img pipelines count;
    "flux": int(steps - steps * strength), as FluxImg2ImgPipeline counts (5 steps at 0.3 run 2, not 1)."""
    if rule == "flux":
        runs = steps - int(max(steps - steps * strength, 0))
    else:
        runs = min(int(steps * strength), steps)
    if runs < 1:
        raise ValueError(f"strength {strength:g} with {steps} steps runs no step (int(steps * strength) = 0): "
                         f"raise strength to at least {1 / steps:.3g} or use more steps")
    return steps - runs


def _call_parameters(pipe: Any) -> dict:
    return dict(inspect.signature(type(pipe).__call__).parameters)


def takes_image(pipe: Any) -> bool:
    """An image-to-image pipeline class (its __call__ takes image and strength): pipe(...) needs a picture."""
    params = _call_parameters(pipe)
    return "image" in params and "strength" in params


def plan(pipe: Any, family: Any, image: Any, strength: Any, steps: int) -> tuple[Any, float | None, int, tuple]:
    """(image, strength, first step that runs, default (height, width)) of a run of a known family.

    An image-to-image pipeline class (StableDiffusionImg2ImgPipeline, ...) needs a picture and takes
    its own default strength; its default size is the picture's (rounded down to what the model
    takes), as SD's and SDXL's take it (their ControlNet image-to-image pipelines' height defaults to the
    picture's too), unless it counts as Flux does and takes a height (FluxImg2ImgPipeline,
    StableDiffusion3Img2ImgPipeline, and Flux's inpainting ones: their usual default size) or inpaints without a
    ControlNet (SD's and SDXL's inpainting pipelines, their PAG ones: `height or unet.config.sample_size *
    vae_scale_factor`; their ControlNet ones take the picture's size)."""
    name = type(pipe).__name__
    own = takes_image(pipe)
    if image is None:
        if strength is not None:
            raise ValueError(f"strength={strength!r} needs an image: pass image=... (a PIL image, array or file path)")
        if own:
            raise ValueError(f"image: {name} is an image-to-image pipeline; pass image=... (a PIL image, array or "
                             "file path) and strength, or use its text-to-image pipeline")
        return None, None, 0, family.default_size()
    image = check_image(image)
    default = _call_parameters(pipe)["strength"].default if own else DEFAULT_STRENGTH
    strength = check_strength(default if strength is None else strength)
    # an image-to-image class counts its steps its own way; nbdiffuse's own img2img as documented (truncate)
    start = start_step(steps, strength, getattr(family, "img2img_rule", "truncate") if own else "truncate")
    params = _call_parameters(pipe)
    inpaints = "mask_image" in params and "control_image" not in params  # a ControlNet's: the picture's size
    if own and "height" in params and (getattr(family, "img2img_rule", "truncate") == "flux" or inpaints):
        return image, strength, start, family.default_size()  # `height or default_sample_size * factor`
    factor = family.vae_factor  # the picture's own size, as diffusers' img2img pipelines take it
    return image, strength, start, (max(factor, image.height // factor * factor),
                                    max(factor, image.width // factor * factor))


def fingerprint(image: Image.Image) -> dict:
    """What a trajectory records of its start picture (the noised latents themselves are kept too)."""
    return {"width": image.width, "height": image.height,
            "sha256": hashlib.sha256(np.asarray(image).tobytes()).hexdigest()[:16]}


def image_latents(family: Any, image: Image.Image, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The picture at the run's size, VAE-encoded into pipeline space: (1, C, h, w)."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    processor = getattr(family.pipe, "image_processor", None)
    if processor is not None and hasattr(processor, "preprocess"):  # the pipeline's own: the same numbers as its img2img
        pixels = processor.preprocess(image, height=height, width=width)
    else:
        pixels = torch.from_numpy(np.asarray(image, np.float32) / 255.0 * 2.0 - 1.0).permute(2, 0, 1)[None]
    return encode_pixels(family, pixels, generator)


def encode_pixels(family: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixels in [-1, 1], (1, 3, H, W), VAE-encoded into pipeline space as the family's pipelines do it: a sample
    of the latent distribution drawn with the run's generator."""
    vae = family.pipe.vae
    param = next(vae.parameters())
    encoder = fp32_copy(vae) if encodes_in_fp32(family) else vae
    pixels = pixels.to(param.device, family.dtype)  # in the model's dtype first, as their prepare_latents casts them
    posterior = encoder.encode(pixels.to(next(encoder.parameters()).dtype)).latent_dist
    return to_pipeline_space(vae, posterior.sample(generator).to(family.dtype))  # scaled in the model's dtype, as theirs


def encodes_in_fp32(family: Any) -> bool:
    """Whether the family's pipelines encode a picture with an fp32 VAE: SDXL's do where the VAE's config says
    force_upcast (whatever its dtype); SD's, SD3's and Flux's encode in the VAE's own dtype."""
    vae = family.pipe.vae
    return bool(getattr(family, "upcasts_encoder", False) and getattr(vae.config, "force_upcast", False)) \
        and next(vae.parameters()).dtype != torch.float32


def skip_picture_draw(family: Any, shape: tuple, generator: torch.Generator) -> None:
    """Advance `generator` past one encode_pixels sample (the latents' shape, in the encoder's dtype, on the VAE's
    device), as a branch's replay of a run's start draws needs."""
    param = next(family.pipe.vae.parameters())
    randn_tensor(shape, generator=generator, device=param.device,
                 dtype=torch.float32 if encodes_in_fp32(family) else param.dtype)


def skip_start_draws(family: Any, shape: tuple, generator: torch.Generator) -> None:
    """Advance `generator` past what an image-to-image run draws before its first step (branch
    replays need the same numbers after it): image_latents' posterior sample, in the encoder's
    dtype, then the start noise, in the model's; both of the latents' shape, on the VAE's device."""
    skip_picture_draw(family, shape, generator)
    randn_tensor(shape, generator=generator, device=next(family.pipe.vae.parameters()).device, dtype=family.dtype)


def noised(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """The clean latents noised to `timestep`, the way the sampler's own img2img does it."""
    t = timestep.reshape(1)
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(latents, noise, t)
    return scheduler.scale_noise(latents, t, noise)  # flow matching: (1 - sigma) x0 + sigma noise
