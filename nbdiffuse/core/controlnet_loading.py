"""load_pipeline(..., controlnet=...): a ControlNet from a folder, a hub id, a model object, or the
embedded model's drawable one ("outline"), or a list of them (several at once: diffusers'
MultiControlNetModel), joined to an SD 1.x/2.x, SDXL, SD3 or Flux pipeline.

The result is diffusers' ControlNet pipeline of that model (StableDiffusionControlNetPipeline,
StableDiffusionXLControlNetPipeline, StableDiffusion3ControlNetPipeline, FluxControlNetPipeline) sharing
the pipeline's components (from_pipe: no copy of the weights), with everything nbdiffuse hung on the
pipeline (pipe_attrs: source, shapes grammar, tiny decoder, LoRA). Each model takes its own kind of
ControlNet (ControlNetModel, SD3ControlNetModel, FluxControlNetModel; several in that kind's
MultiControlNetModel): a folder's config.json names its kind, and another kind is refused before any
weights load. Weights load from safetensors only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from .model_source import check_hub_id, local_folder
from .pipe_attrs import copy_attrs, set_source, speaks_shapes
from .quiet_logs import without_message
from .sources import HUB_ID, PipelineLoadError, short_error

OUTLINE = "outline"
OUTLINE_FOLDER = Path(__file__).resolve().parent.parent / "shapes" / "controlnet_outline"
ALLOWED = ("a ControlNet folder, a hub id, a diffusers ControlNet model (ControlNetModel, SD3ControlNetModel, "
           "FluxControlNetModel), or \"outline\" (the embedded model's drawable ControlNet), or a list of them "
           "(several at once)")


class Join(NamedTuple):
    """A model's ControlNet pipeline: the pipelines it joins, the result's class, its kind of ControlNet and
    that kind's several-at-once wrapper."""
    bases: tuple
    pipeline: type
    net: type
    multi: type


def joins() -> list[Join]:
    from diffusers import (ControlNetModel, FluxControlNetModel, FluxControlNetPipeline, FluxMultiControlNetModel,
                           FluxPipeline, MultiControlNetModel, SD3ControlNetModel, SD3MultiControlNetModel,
                           StableDiffusion3ControlNetPipeline, StableDiffusion3Pipeline,
                           StableDiffusionControlNetPipeline, StableDiffusionPipeline, StableDiffusionXLControlNetPipeline,
                           StableDiffusionXLPipeline)

    return [Join((StableDiffusionXLPipeline, StableDiffusionXLControlNetPipeline), StableDiffusionXLControlNetPipeline,
                 ControlNetModel, MultiControlNetModel),
            Join((StableDiffusionPipeline, StableDiffusionControlNetPipeline), StableDiffusionControlNetPipeline,
                 ControlNetModel, MultiControlNetModel),
            Join((StableDiffusion3Pipeline, StableDiffusion3ControlNetPipeline), StableDiffusion3ControlNetPipeline,
                 SD3ControlNetModel, SD3MultiControlNetModel),
            Join((FluxPipeline, FluxControlNetPipeline), FluxControlNetPipeline, FluxControlNetModel,
                 FluxMultiControlNetModel)]


def _kinds() -> tuple[tuple, tuple]:
    """(every kind of ControlNet, every several-at-once wrapper) load_pipeline takes."""
    found = joins()
    return tuple({j.net for j in found}), tuple({j.multi for j in found})


def check_controlnet_arg(controlnet: Any) -> None:
    """load_pipeline's controlnet= of a kind it takes (before any loading)."""
    nets, multis = _kinds()
    if isinstance(controlnet, multis):
        return
    if isinstance(controlnet, (list, tuple)):
        if not controlnet:
            raise ValueError(f"controlnet must be {ALLOWED}; got an empty {type(controlnet).__name__}")
        for j, one in enumerate(controlnet):
            if not isinstance(one, (str, os.PathLike, *nets)):
                raise TypeError(f"controlnet[{j}] must be a ControlNet folder, a hub id, a diffusers ControlNet model "
                                f"or \"outline\"; got {type(one).__name__}")
        return
    if not isinstance(controlnet, (str, os.PathLike, *nets)):
        raise TypeError(f"controlnet must be {ALLOWED}; got {type(controlnet).__name__}")


def join_of(pipe: Any) -> Join:
    """The ControlNet pipeline `pipe`'s model makes, or a ValueError naming the models that take one."""
    for join in joins():
        if isinstance(pipe, join.bases):
            return join
    raise ValueError(f"controlnet= works with Stable Diffusion 1.x/2.x, SDXL, SD3 and Flux pipelines; got "
                     f"{type(pipe).__name__}")


def load_controlnets(controlnet: Any, pipe: Any, join: Join | None = None) -> Any:
    """The ControlNet `controlnet` names, or for a list of several (or a MultiControlNetModel) that kind's
    MultiControlNetModel of them in that order, on `pipe`'s denoiser's device and dtype."""
    join = join or join_of(pipe)
    if isinstance(controlnet, _kinds()[1]):
        controlnet = list(controlnet.nets)
    if not isinstance(controlnet, (list, tuple)):
        return load_controlnet(controlnet, pipe, join)
    nets = [load_controlnet(one, pipe, join, f"controlnet[{j}]") for j, one in enumerate(controlnet)]
    return nets[0] if len(nets) == 1 else join.multi(nets)


def load_controlnet(controlnet: Any, pipe: Any, join: Join | None = None, name: str = "controlnet") -> Any:
    """The ControlNet `controlnet` names (of the kind `pipe`'s model takes), on `pipe`'s denoiser's device
    and dtype."""
    join = join or join_of(pipe)
    kind = join.net
    if isinstance(controlnet, _kinds()[0]):
        if not isinstance(controlnet, kind):
            raise ValueError(f"{name} is a {type(controlnet).__name__}; a {type(pipe).__name__} takes a "
                             f"{kind.__name__}")
        net = controlnet
    elif controlnet == OUTLINE:
        if not speaks_shapes(pipe):
            raise ValueError("controlnet='outline' is the embedded shapes model's ControlNet: load it with "
                             "nbd.load_pipeline(controlnet='outline') (no source)")
        if not (OUTLINE_FOLDER / "config.json").is_file():
            raise PipelineLoadError("the outline ControlNet is not shipped in this installation; train it with "
                                    "`python -m nbdiffuse.shapes.train_controlnet --out DIR` and pass controlnet=DIR")
        net = _from_pretrained(kind, OUTLINE_FOLDER, "controlnet='outline'", local_only=True)
        set_source(net, OUTLINE)
    elif isinstance(controlnet, (str, os.PathLike)):
        path = local_folder(controlnet, name)
        if path is not None:
            if not (path / "config.json").is_file():
                raise PipelineLoadError(f"{name}={str(controlnet)!r} is not a ControlNet folder: it has no "
                                        "config.json")
            _check_kind(path / "config.json", kind, pipe, f"{name}={str(controlnet)!r}")
            net = _from_pretrained(kind, path, str(controlnet), local_only=True)
        else:
            label = str(controlnet)
            check_hub_id(label, name)
            if not HUB_ID.match(label):
                raise PipelineLoadError(f"{name}={label!r} is neither an existing folder nor a hub id like "
                                        "'org/model'")
            net = _from_pretrained(kind, label, label, local_only=False)
        set_source(net, str(controlnet))
    else:
        raise TypeError(f"{name} must be {ALLOWED}; got {type(controlnet).__name__}")
    param = next(denoiser_of(pipe).parameters())
    with _no_empty_float32_notes():
        return net.to(param.device, param.dtype).eval()


def denoiser_of(pipe: Any) -> Any:
    """The model a ControlNet steers: the UNet, or the transformer (SD3, Flux)."""
    return getattr(pipe, "unet", None) or pipe.transformer


def _check_kind(config_file: Path, kind: type, pipe: Any, label: str) -> None:
    """A folder of another kind of ControlNet (its config's _class_name) is refused before its weights load."""
    try:
        found = json.loads(config_file.read_text()).get("_class_name")
    except (OSError, ValueError) as exc:
        raise PipelineLoadError(f"{label}: its config.json cannot be read: {exc}") from exc
    if found and found != kind.__name__:
        raise PipelineLoadError(f"{label} is a {found}; a {type(pipe).__name__} takes a {kind.__name__}")


def _from_pretrained(cls: Any, where: Any, label: str, local_only: bool) -> Any:
    try:
        return cls.from_pretrained(where, use_safetensors=True, local_files_only=local_only)
    except Exception as exc:  # missing files, no safetensors, a config of another model
        raise PipelineLoadError(f"could not load the ControlNet {label!r}: {type(exc).__name__}: "
                                f"{short_error(exc)}") from exc


def with_controlnet(pipe: Any, controlnet: Any) -> Any:
    """`pipe` (SD 1.x/2.x, SDXL, SD3 or Flux, with or without a ControlNet) as a ControlNet pipeline of
    `controlnet`."""
    join = join_of(pipe)
    net = load_controlnets(controlnet, pipe, join)
    with _no_empty_float32_notes():
        joined = join.pipeline.from_pipe(pipe, controlnet=net)
    joined.set_progress_bar_config(disable=True)
    copy_attrs(pipe, joined)
    return joined


def _no_empty_float32_notes():
    """diffusers' ModelMixin.to() with a dtype warns "There are modules in X that should be kept in float32: []"
    even where the list is empty (from_pipe casts every model): nothing to keep, so nothing to say."""
    return without_message("should be kept in float32: []", "diffusers.models.modeling_utils")
