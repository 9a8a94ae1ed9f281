"""Which adapter drives a pipeline: a known family (by pipeline class), the generic watcher, or none.

A new family is one more (pipeline class, adapter class) pair in _families().
"""
from __future__ import annotations

import inspect
from typing import Any

from ..pipe_attrs import speaks_shapes
from .flux import FluxFamily
from .generic import GenericPipeline
from .pixart import PixArtFamily
from .sd import StableDiffusionFamily
from .sd3 import StableDiffusion3Family
from .sdxl import StableDiffusionXLFamily


def _families() -> list[tuple[type, type]]:
    from diffusers import (FluxControlNetImg2ImgPipeline, FluxControlNetPipeline, FluxImg2ImgPipeline,
                           FluxControlNetInpaintPipeline, FluxFillPipeline, FluxInpaintPipeline, FluxPipeline,
                           PixArtAlphaPipeline, PixArtSigmaPAGPipeline, PixArtSigmaPipeline, StableDiffusion3ControlNetPipeline,
                           StableDiffusion3Img2ImgPipeline, StableDiffusion3InpaintPipeline, StableDiffusion3PAGImg2ImgPipeline,
                           StableDiffusion3PAGPipeline, StableDiffusion3Pipeline,
                           StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline,
                           StableDiffusionControlNetPAGPipeline, StableDiffusionImg2ImgPipeline,
                           StableDiffusionInpaintPipeline, StableDiffusionPAGInpaintPipeline,
                           StableDiffusionXLPAGInpaintPipeline, StableDiffusionControlNetInpaintPipeline,
                           StableDiffusionXLControlNetInpaintPipeline, StableDiffusionControlNetPAGInpaintPipeline,
                           StableDiffusionXLControlNetUnionInpaintPipeline,
                           StableDiffusionPAGImg2ImgPipeline,
                           StableDiffusionPAGPipeline, StableDiffusionPipeline,
                           StableDiffusionXLControlNetImg2ImgPipeline, StableDiffusionXLControlNetPAGImg2ImgPipeline,
                           StableDiffusionXLControlNetPAGPipeline, StableDiffusionXLControlNetPipeline,
                           StableDiffusionXLControlNetUnionImg2ImgPipeline, StableDiffusionXLControlNetUnionPipeline,
                           StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline,
                           StableDiffusionXLPAGImg2ImgPipeline,
                           StableDiffusionXLPAGPipeline, StableDiffusionXLPipeline)

    # Image-to-image classes share their text-to-image sibling's components and run its family's loop
    # (trace(image=..., strength=...)), the way their own __call__ prepares the start latents.
    # A ControlNet pipeline (its image-to-image and union siblings too) is its base family's model plus a
    # ControlNet (core/controlnet.py runs it). A PAG pipeline is its family's model with perturbed-attention
    # guidance (core/pag.py runs it). SD's, SDXL's, SD3's and Flux's inpainting pipelines (Flux Fill, their
    # ControlNet ones, SD's and SDXL's PAG ones too) are their model with a mask (core/inpaint_loop.py); the other
    # inpainting pipelines run their own loop, watched (core/generic.py).
    return [(StableDiffusionXLPipeline, StableDiffusionXLFamily), (StableDiffusionPipeline, StableDiffusionFamily),
            (StableDiffusionXLControlNetPipeline, StableDiffusionXLFamily),
            (StableDiffusionControlNetPipeline, StableDiffusionFamily),
            (StableDiffusion3Pipeline, StableDiffusion3Family), (FluxPipeline, FluxFamily),
            (StableDiffusion3ControlNetPipeline, StableDiffusion3Family), (FluxControlNetPipeline, FluxFamily),
            (PixArtSigmaPipeline, PixArtFamily), (PixArtAlphaPipeline, PixArtFamily),
            (StableDiffusionImg2ImgPipeline, StableDiffusionFamily),
            (StableDiffusionXLImg2ImgPipeline, StableDiffusionXLFamily), (FluxImg2ImgPipeline, FluxFamily),
            (StableDiffusion3Img2ImgPipeline, StableDiffusion3Family),
            (StableDiffusionControlNetImg2ImgPipeline, StableDiffusionFamily),
            (StableDiffusionXLControlNetImg2ImgPipeline, StableDiffusionXLFamily),
            (StableDiffusionXLControlNetUnionPipeline, StableDiffusionXLFamily),
            (StableDiffusionXLControlNetUnionImg2ImgPipeline, StableDiffusionXLFamily),
            (FluxControlNetImg2ImgPipeline, FluxFamily),
            (StableDiffusionPAGPipeline, StableDiffusionFamily), (StableDiffusionXLPAGPipeline, StableDiffusionXLFamily),
            (StableDiffusion3PAGPipeline, StableDiffusion3Family),
            (StableDiffusionPAGImg2ImgPipeline, StableDiffusionFamily),
            (StableDiffusionXLPAGImg2ImgPipeline, StableDiffusionXLFamily),
            (StableDiffusion3PAGImg2ImgPipeline, StableDiffusion3Family),
            (StableDiffusionControlNetPAGPipeline, StableDiffusionFamily),
            (StableDiffusionXLControlNetPAGPipeline, StableDiffusionXLFamily),
            (StableDiffusionXLControlNetPAGImg2ImgPipeline, StableDiffusionXLFamily),
            (PixArtSigmaPAGPipeline, PixArtFamily),
            (StableDiffusionInpaintPipeline, StableDiffusionFamily),
            (StableDiffusionXLInpaintPipeline, StableDiffusionXLFamily),
            (StableDiffusionPAGInpaintPipeline, StableDiffusionFamily),
            (StableDiffusionXLPAGInpaintPipeline, StableDiffusionXLFamily),
            (StableDiffusionControlNetInpaintPipeline, StableDiffusionFamily),
            (StableDiffusionXLControlNetInpaintPipeline, StableDiffusionXLFamily),
            (StableDiffusionControlNetPAGInpaintPipeline, StableDiffusionFamily),
            (StableDiffusionXLControlNetUnionInpaintPipeline, StableDiffusionXLFamily),
            (StableDiffusion3InpaintPipeline, StableDiffusion3Family), (FluxInpaintPipeline, FluxFamily),
            (FluxControlNetInpaintPipeline, FluxFamily), (FluxFillPipeline, FluxFamily)]


def supported_pipelines() -> list[str]:
    return [pipe_cls.__name__ for pipe_cls, _ in _families()]


CALLBACK_PATH = ("Other pipelines work too (x_t only) when their __call__ takes a prompt and callback_on_step_end "
                 "with 'latents' among callback_on_step_end_tensor_inputs.")


def family_for(pipe: Any) -> StableDiffusionFamily:
    """The adapter for `pipe`, or a TypeError that lists what is supported."""
    for pipe_cls, family_cls in _families():
        if isinstance(pipe, pipe_cls):
            return family_cls(pipe)
    raise TypeError(
        f"pipe must be a supported diffusers pipeline ({', '.join(supported_pipelines())}); "
        f"got {type(pipe).__name__}. Load one with nbd.load_pipeline()."
    )


def unsupported(pipe: Any) -> TypeError:
    """The error for a pipeline that neither a family nor the generic path can run: what is supported,
    the callback path, and why this one fits neither."""
    name = type(pipe).__name__
    why = generic_refusal(pipe) if takes_step_callback(pipe) else None
    if why is None:
        why = f"{name}.__call__ takes no callback_on_step_end that sees the latents"
    return TypeError(f"pipe must be a supported diffusers pipeline ({', '.join(supported_pipelines())}); got "
                     f"{name}: {why}. {CALLBACK_PATH} Load one with nbd.load_pipeline().")


def generic_refusal(pipe: Any) -> str | None:
    """Why a pipeline with a step callback still cannot run on the generic path (None: it can).

    Every run starts from a text prompt: a pipeline whose __call__ takes none (KandinskyV22Pipeline
    wants image embeddings from its prior pipeline) would fail inside pipe(...), so it is refused first."""
    try:
        params = inspect.signature(type(pipe).__call__).parameters
    except (TypeError, ValueError):
        return f"nbdiffuse cannot read the signature of {type(pipe).__name__}.__call__"
    if "prompt" not in params:
        wants = [k for k, p in params.items() if k != "self" and p.default is inspect.Parameter.empty
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        return (f"{type(pipe).__name__}.__call__ takes no prompt" + (f" (it needs {', '.join(wants)})" if wants else "")
                + ", and every nbdiffuse run starts from a text prompt")
    return None


def takes_step_callback(pipe: Any) -> bool:
    """True when pipe(...) accepts callback_on_step_end and may hand it the latents."""
    call = getattr(type(pipe), "__call__", None)  # noqa: B004  (the class's own __call__, to read its signature)
    if call is None:
        return False
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False
    if "callback_on_step_end" not in params or "callback_on_step_end_tensor_inputs" not in params:
        return False
    inputs = getattr(pipe, "_callback_tensor_inputs", None)
    return inputs is not None and "latents" in inputs


def is_generic(pipe: Any) -> bool:
    """A pipeline outside the known families that the generic path can watch."""
    try:
        family_for(pipe)
    except TypeError:
        return takes_step_callback(pipe) and generic_refusal(pipe) is None
    return False


def adapter_for(pipe: Any) -> Any:
    """The family adapter of `pipe`, a GenericPipeline for other pipelines with a step callback, or a TypeError."""
    try:
        return family_for(pipe)
    except TypeError:
        if is_generic(pipe):
            return GenericPipeline(pipe)
        raise unsupported(pipe) from None


SHAPES_GUIDANCE = 5.0  # the embedded model was trained for guidance around 5 (README, "The embedded model")


def default_guidance(pipe: Any) -> float:
    """The guidance a UI starts from for `pipe`: the embedded model's, else what its family's pipeline uses."""
    if speaks_shapes(pipe):
        return SHAPES_GUIDANCE
    return float(adapter_for(pipe).default_guidance)
