"""Joining perturbed-attention guidance to a pipeline (`load_pipeline(pag=...)`): the pipeline's PAG sibling in
diffusers (its AutoPipeline's `enable_pag`), sharing every component, with the layers to perturb.

The embedded model gets a StableDiffusionPAGPipeline, a ControlNet pipeline of SD or SDXL its PAG ControlNet
pipeline, and so on; a pipeline diffusers has no PAG sibling for (Flux) is refused by name. The layers are
checked against the denoiser before any model work (core/pag.py check_layers). Sweeps pass `pag` to every
worker, as `controlnet` and `lora`, so that workers load the same pipeline.
"""
from __future__ import annotations

from typing import Any

from .pag import check_layers, is_pag
from .pipe_attrs import copy_attrs
from .quiet_logs import without_message
from .validate import show_value

PAG_FAMILIES = "SD 1.x/2.x, SDXL, SD3, PixArt-sigma, HunyuanDiT, Sana, Kolors, and SD's and SDXL's ControlNet pipelines"


def check_pag_arg(pag: Any) -> list[str] | None:
    """load_pipeline's pag: None, or the layers to perturb: a pattern or a non-empty list of them (diffusers'
    pag_applied_layers: "mid", "up", "blocks.1", ...)."""
    if pag is None:
        return None
    layers = [pag] if isinstance(pag, str) else pag
    if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(x, str) and x for x in layers):
        raise TypeError(f"pag must be the layers perturbed-attention guidance perturbs: a pattern such as 'mid' or "
                        f"'up', or a non-empty list of them; got {show_value(pag)}")
    return list(layers)


def with_pag(pipe: Any, layers: list[str]) -> Any:
    """`pipe`'s PAG sibling perturbing `layers`, sharing its components (its own attributes copied over)."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    name = type(pipe).__name__
    auto = AutoPipelineForImage2Image if "Img2Img" in name else AutoPipelineForText2Image
    try:
        with without_message("should be kept in float32: []", "diffusers.models.modeling_utils"):
            joined = auto.from_pipe(pipe, enable_pag=True, pag_applied_layers=layers)
    except ValueError:
        joined = None
    if joined is None or not is_pag(joined):
        raise ValueError(f"pag={show_value(layers if len(layers) > 1 else layers[0])}: {name} has no PAG pipeline in "
                         f"diffusers (it has them for {PAG_FAMILIES})")
    check_layers(joined, tuple(layers), name="pag")
    joined.set_progress_bar_config(disable=True)
    copy_attrs(pipe, joined)
    return joined
