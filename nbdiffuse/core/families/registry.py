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
    from diffusers import (FluxPipeline, PixArtAlphaPipeline, PixArtSigmaPipeline, StableDiffusion3Pipeline,
                           StableDiffusionControlNetPipeline, StableDiffusionPipeline,
                           StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline)

    # A ControlNet pipeline is its base family's model plus a ControlNet (core/controlnet.py runs it).
    return [(StableDiffusionXLPipeline, StableDiffusionXLFamily), (StableDiffusionPipeline, StableDiffusionFamily),
            (StableDiffusionXLControlNetPipeline, StableDiffusionXLFamily),
            (StableDiffusionControlNetPipeline, StableDiffusionFamily),
            (StableDiffusion3Pipeline, StableDiffusion3Family), (FluxPipeline, FluxFamily),
            (PixArtSigmaPipeline, PixArtFamily), (PixArtAlphaPipeline, PixArtFamily)]


def supported_pipelines() -> list[str]:
    return [pipe_cls.__name__ for pipe_cls, _ in _families()]


def family_for(pipe: Any) -> StableDiffusionFamily:
    """The adapter for `pipe`, or a TypeError that lists what is supported."""
    for pipe_cls, family_cls in _families():
        if isinstance(pipe, pipe_cls):
            return family_cls(pipe)
    raise TypeError(
        f"pipe must be a supported diffusers pipeline ({', '.join(supported_pipelines())}); "
        f"got {type(pipe).__name__}. Load one with nbd.load_pipeline()."
    )


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
        return takes_step_callback(pipe)
    return False


def adapter_for(pipe: Any) -> Any:
    """The family adapter of `pipe`, a GenericPipeline for other pipelines with a step callback, or a TypeError."""
    try:
        return family_for(pipe)
    except TypeError as exc:
        if takes_step_callback(pipe):
            return GenericPipeline(pipe)
        raise TypeError(f"{exc} Other pipelines work too (x_t only) when their __call__ takes "
                        "callback_on_step_end with 'latents' among callback_on_step_end_tensor_inputs.") from None


SHAPES_GUIDANCE = 5.0  # the embedded model was trained for guidance around 5 (README, "The embedded model")


def default_guidance(pipe: Any) -> float:
    """The guidance a UI starts from for `pipe`: the embedded model's, else what its family's pipeline uses."""
    if speaks_shapes(pipe):
        return SHAPES_GUIDANCE
    return float(adapter_for(pipe).default_guidance)
