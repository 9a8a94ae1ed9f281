"""load_pipeline(..., controlnet=...): a ControlNet from a folder, a hub id, a model object, or the
embedded model's drawable one ("outline"), or a list of them (several at once: diffusers'
MultiControlNetModel), joined to an SD 1.x/2.x or SDXL pipeline.

The result is diffusers' StableDiffusionControlNetPipeline / StableDiffusionXLControlNetPipeline
sharing the pipeline's components (from_pipe: no copy of the weights), with everything nbdiffuse
hung on the pipeline (pipe_attrs: source, shapes grammar, tiny decoder, LoRA). Weights load from
safetensors only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .model_source import check_hub_id, local_folder
from .pipe_attrs import copy_attrs, set_source, speaks_shapes
from .quiet_logs import without_message
from .sources import HUB_ID, PipelineLoadError, short_error

OUTLINE = "outline"
OUTLINE_FOLDER = Path(__file__).resolve().parent.parent / "shapes" / "controlnet_outline"
ALLOWED = ("a ControlNet folder, a hub id, a diffusers ControlNetModel, or \"outline\" (the embedded model's "
           "drawable ControlNet), or a list of them (several at once)")


def check_controlnet_arg(controlnet: Any) -> None:
    """load_pipeline's controlnet= of a kind it takes (before any loading)."""
    from diffusers import ControlNetModel, MultiControlNetModel

    if isinstance(controlnet, MultiControlNetModel):
        return
    if isinstance(controlnet, (list, tuple)):
        if not controlnet:
            raise ValueError(f"controlnet must be {ALLOWED}; got an empty {type(controlnet).__name__}")
        for j, one in enumerate(controlnet):
            if not isinstance(one, (str, os.PathLike, ControlNetModel)):
                raise TypeError(f"controlnet[{j}] must be a ControlNet folder, a hub id, a diffusers ControlNetModel "
                                f"or \"outline\"; got {type(one).__name__}")
        return
    if not isinstance(controlnet, (str, os.PathLike, ControlNetModel)):
        raise TypeError(f"controlnet must be {ALLOWED}; got {type(controlnet).__name__}")


def load_controlnets(controlnet: Any, pipe: Any) -> Any:
    """The ControlNetModel `controlnet` names, or for a list of several (or a MultiControlNetModel) a
    MultiControlNetModel of them in that order, on `pipe`'s UNet's device and dtype."""
    from diffusers import MultiControlNetModel

    if isinstance(controlnet, MultiControlNetModel):
        controlnet = list(controlnet.nets)
    if not isinstance(controlnet, (list, tuple)):
        return load_controlnet(controlnet, pipe)
    nets = [load_controlnet(one, pipe) for one in controlnet]
    return nets[0] if len(nets) == 1 else MultiControlNetModel(nets)


def load_controlnet(controlnet: Any, pipe: Any) -> Any:
    """The ControlNetModel `controlnet` names, on `pipe`'s UNet's device and dtype."""
    from diffusers import ControlNetModel

    if isinstance(controlnet, ControlNetModel):
        net = controlnet
    elif controlnet == OUTLINE:
        if not speaks_shapes(pipe):
            raise ValueError("controlnet='outline' is the embedded shapes model's ControlNet: load it with "
                             "nbd.load_pipeline(controlnet='outline') (no source)")
        if not (OUTLINE_FOLDER / "config.json").is_file():
            raise PipelineLoadError("the outline ControlNet is not shipped in this installation; train it with "
                                    "`python -m nbdiffuse.shapes.train_controlnet --out DIR` and pass controlnet=DIR")
        net = _from_pretrained(ControlNetModel, OUTLINE_FOLDER, "controlnet='outline'", local_only=True)
        set_source(net, OUTLINE)
    elif isinstance(controlnet, (str, os.PathLike)):
        path = local_folder(controlnet, "controlnet")
        if path is not None:
            if not (path / "config.json").is_file():
                raise PipelineLoadError(f"controlnet={str(controlnet)!r} is not a ControlNet folder: it has no "
                                        "config.json")
            net = _from_pretrained(ControlNetModel, path, str(controlnet), local_only=True)
        else:
            name = str(controlnet)
            check_hub_id(name, "controlnet")
            if not HUB_ID.match(name):
                raise PipelineLoadError(f"controlnet={name!r} is neither an existing folder nor a hub id like "
                                        "'org/model'")
            net = _from_pretrained(ControlNetModel, name, name, local_only=False)
        set_source(net, str(controlnet))
    else:
        raise TypeError(f"controlnet must be {ALLOWED}; got {type(controlnet).__name__}")
    param = next(pipe.unet.parameters())
    with _no_empty_float32_notes():
        return net.to(param.device, param.dtype).eval()


def _from_pretrained(cls: Any, where: Any, label: str, local_only: bool) -> Any:
    try:
        return cls.from_pretrained(where, use_safetensors=True, local_files_only=local_only)
    except Exception as exc:  # missing files, no safetensors, a config of another model
        raise PipelineLoadError(f"could not load the ControlNet {label!r}: {type(exc).__name__}: "
                                f"{short_error(exc)}") from exc


def with_controlnet(pipe: Any, controlnet: Any) -> Any:
    """`pipe` (SD 1.x/2.x or SDXL, with or without a ControlNet) as a ControlNet pipeline of `controlnet`."""
    from diffusers import (StableDiffusionControlNetPipeline, StableDiffusionPipeline,
                           StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline)

    if isinstance(pipe, (StableDiffusionXLPipeline, StableDiffusionXLControlNetPipeline)):
        cls = StableDiffusionXLControlNetPipeline
    elif isinstance(pipe, (StableDiffusionPipeline, StableDiffusionControlNetPipeline)):
        cls = StableDiffusionControlNetPipeline
    else:
        raise ValueError(f"controlnet= works with Stable Diffusion 1.x/2.x and SDXL pipelines; got "
                         f"{type(pipe).__name__} (Flux's and SD3's ControlNets are not supported yet)")
    net = load_controlnets(controlnet, pipe)
    with _no_empty_float32_notes():
        joined = cls.from_pipe(pipe, controlnet=net)
    joined.set_progress_bar_config(disable=True)
    copy_attrs(pipe, joined)
    return joined


def _no_empty_float32_notes():
    """diffusers' ModelMixin.to() with a dtype warns "There are modules in X that should be kept in float32: []"
    even where the list is empty (from_pipe casts every model): nothing to keep, so nothing to say."""
    return without_message("should be kept in float32: []", "diffusers.models.modeling_utils")
