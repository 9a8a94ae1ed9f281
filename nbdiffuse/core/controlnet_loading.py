"""load_pipeline(..., controlnet=...): a ControlNet from a folder, a hub id, a model object, or the
embedded model's drawable one ("outline"), or a list of them (several at once: diffusers'
MultiControlNetModel), joined to an SD 1.x/2.x, SDXL, SD3 or Flux pipeline.

The result is diffusers' ControlNet pipeline of that model and that kind of ControlNet
(StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline, StableDiffusionXLControlNetUnionPipeline
for SDXL's union ControlNet, StableDiffusion3ControlNetPipeline, FluxControlNetPipeline) sharing the pipeline's
components (from_pipe: no copy of the weights), with everything nbdiffuse hung on the pipeline (pipe_attrs:
source, shapes grammar, tiny decoder, LoRA). Each model takes its own kinds of ControlNet (ControlNetModel, SDXL
also ControlNetUnionModel, SD3ControlNetModel, FluxControlNetModel; several, of one kind, in that kind's
MultiControlNetModel): a folder's or hub id's config names its kind (the config alone is read first), and a
kind the model does not take is refused before any weights load. Weights load from safetensors only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from .families.base import denoiser_of
from .model_source import check_hub_id, local_folder
from .pipe_attrs import copy_attrs, set_source, speaks_shapes
from .quiet_logs import without_message
from .sources import HUB_ID, PipelineLoadError, short_error

OUTLINE = "outline"
OUTLINE_FOLDER = Path(__file__).resolve().parent.parent / "shapes" / "controlnet_outline"
ALLOWED = ("a ControlNet folder, a hub id, a diffusers ControlNet model (ControlNetModel, ControlNetUnionModel, "
           "SD3ControlNetModel, FluxControlNetModel), or \"outline\" (the embedded model's drawable ControlNet), or a "
           "list of them (several at once)")


class Join(NamedTuple):
    """A model's ControlNet pipeline: the pipelines it joins, the result's class, its kind of ControlNet and
    that kind's several-at-once wrapper."""
    bases: tuple
    pipeline: type
    net: type
    multi: type


def joins() -> list[Join]:
    from diffusers import (ControlNetModel, ControlNetUnionModel, FluxControlNetModel, FluxControlNetPipeline,
                           FluxMultiControlNetModel, FluxPipeline, MultiControlNetModel, SD3ControlNetModel,
                           SD3MultiControlNetModel, StableDiffusion3ControlNetPipeline, StableDiffusion3Pipeline,
                           StableDiffusionControlNetPipeline, StableDiffusionPipeline, StableDiffusionXLControlNetPipeline,
                           StableDiffusionXLControlNetUnionPipeline, StableDiffusionXLPipeline)
    from diffusers.models.controlnets.multicontrolnet_union import MultiControlNetUnionModel

    sdxl = (StableDiffusionXLPipeline, StableDiffusionXLControlNetPipeline, StableDiffusionXLControlNetUnionPipeline)
    return [Join(sdxl, StableDiffusionXLControlNetPipeline, ControlNetModel, MultiControlNetModel),
            Join(sdxl, StableDiffusionXLControlNetUnionPipeline, ControlNetUnionModel, MultiControlNetUnionModel),
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


def joins_of(pipe: Any) -> list[Join]:
    """The ControlNet pipelines `pipe`'s model makes (SDXL: its ControlNet's and its union ControlNet's), or a
    ValueError naming the models that take one."""
    found = [join for join in joins() if isinstance(pipe, join.bases)]
    if not found:
        raise ValueError(f"controlnet= works with Stable Diffusion 1.x/2.x, SDXL, SD3 and Flux pipelines; got "
                         f"{type(pipe).__name__}")
    return found


def load_controlnets(controlnet: Any, pipe: Any) -> tuple[Any, Join]:
    """(the ControlNet `controlnet` names, or for a list of several (or a MultiControlNetModel) that kind's
    MultiControlNetModel of them in that order, on `pipe`'s denoiser's device and dtype; the pipeline they make)."""
    if isinstance(controlnet, _kinds()[1]):
        controlnet = list(controlnet.nets)
    if not isinstance(controlnet, (list, tuple)):
        return load_controlnet(controlnet, pipe)
    made = [load_controlnet(one, pipe, f"controlnet[{j}]") for j, one in enumerate(controlnet)]
    kinds = [join.net.__name__ for _, join in made]
    if len(set(kinds)) > 1:
        raise ValueError(f"controlnet: several ControlNets run together must be of one kind; got {', '.join(kinds)}")
    nets, join = [net for net, _ in made], made[0][1]
    return (nets[0] if len(nets) == 1 else join.multi(nets)), join


def load_controlnet(controlnet: Any, pipe: Any, name: str = "controlnet") -> tuple[Any, Join]:
    """(the ControlNet `controlnet` names, of a kind `pipe`'s model takes, on `pipe`'s denoiser's device and
    dtype; the pipeline it makes). A folder's or hub id's config names its kind, read before its weights."""
    found = joins_of(pipe)
    takes = " or a ".join(join.net.__name__ for join in found)
    if isinstance(controlnet, _kinds()[0]):
        join = next((j for j in found if isinstance(controlnet, j.net)), None)
        if join is None:
            raise ValueError(f"{name} is a {type(controlnet).__name__}; a {type(pipe).__name__} takes a {takes}")
        net = controlnet
    elif controlnet == OUTLINE:
        if not speaks_shapes(pipe):
            raise ValueError("controlnet='outline' is the embedded shapes model's ControlNet: load it with "
                             "nbd.load_pipeline(controlnet='outline') (no source)")
        if not (OUTLINE_FOLDER / "config.json").is_file():
            raise PipelineLoadError("the outline ControlNet is not shipped in this installation; train it with "
                                    "`python -m nbdiffuse.shapes.train_controlnet --out DIR` and pass controlnet=DIR")
        join = found[0]
        net = _from_pretrained(join.net, OUTLINE_FOLDER, "controlnet='outline'", local_only=True)
        set_source(net, OUTLINE)
    elif isinstance(controlnet, (str, os.PathLike)):
        label = str(controlnet)
        path = local_folder(controlnet, name)
        if path is not None and not (path / "config.json").is_file():
            raise PipelineLoadError(f"{name}={label!r} is not a ControlNet folder: it has no config.json")
        if path is None:
            check_hub_id(label, name)
            if not HUB_ID.match(label):
                raise PipelineLoadError(f"{name}={label!r} is neither an existing folder nor a hub id like 'org/model'")
        where = path if path is not None else label
        kind = _class_name(where, f"{name}={label!r}", local_only=path is not None)
        join = next((j for j in found if j.net.__name__ == kind), None if kind else found[0])
        if join is None:
            raise PipelineLoadError(f"{name}={label!r} is a {kind}; a {type(pipe).__name__} takes a {takes}")
        net = _from_pretrained(join.net, where, label, local_only=path is not None)
        set_source(net, label)
    else:
        raise TypeError(f"{name} must be {ALLOWED}; got {type(controlnet).__name__}")
    param = next(denoiser_of(pipe).parameters())
    with _no_empty_float32_notes():
        return net.to(param.device, param.dtype).eval(), join


def _class_name(where: Any, label: str, local_only: bool) -> str | None:
    """The kind of ControlNet a folder or hub id holds: its config's _class_name (the config alone is read)."""
    from diffusers import ControlNetModel

    try:
        return ControlNetModel.load_config(where, local_files_only=local_only).get("_class_name")
    except Exception as exc:  # unreadable JSON, no such repository, offline without a cached copy
        raise PipelineLoadError(f"{label}: its config cannot be read: {type(exc).__name__}: {short_error(exc)}") \
            from exc


def _from_pretrained(cls: Any, where: Any, label: str, local_only: bool) -> Any:
    try:
        return cls.from_pretrained(where, use_safetensors=True, local_files_only=local_only)
    except Exception as exc:  # missing files, no safetensors, a config of another model
        raise PipelineLoadError(f"could not load the ControlNet {label!r}: {type(exc).__name__}: "
                                f"{short_error(exc)}") from exc


def with_controlnet(pipe: Any, controlnet: Any) -> Any:
    """`pipe` (SD 1.x/2.x, SDXL, SD3 or Flux, with or without a ControlNet) as a ControlNet pipeline of
    `controlnet`."""
    net, join = load_controlnets(controlnet, pipe)
    with _no_empty_float32_notes():
        joined = join.pipeline.from_pipe(pipe, controlnet=net)
    joined.set_progress_bar_config(disable=True)
    copy_attrs(pipe, joined)
    return joined


def _no_empty_float32_notes():
    """diffusers' ModelMixin.to() with a dtype warns "There are modules in X that should be kept in float32: []"
    even where the list is empty (from_pipe casts every model): nothing to keep, so nothing to say."""
    return without_message("should be kept in float32: []", "diffusers.models.modeling_utils")
