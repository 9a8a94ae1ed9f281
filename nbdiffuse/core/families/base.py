"""What every family adapter shares: the text conditioning it hands the loop, which model denoises (denoiser_of,
the generic path and ControlNet loading too), and where it runs.

The adapters themselves start at sd.StableDiffusionFamily, which the other families subclass.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Conditioning:
    """Text conditioning for one run, uncond first as diffusers batches it."""
    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor]
    both: dict[str, torch.Tensor] = field(default_factory=dict)


def denoiser_of(pipe: Any) -> Any:
    """The model a pipeline denoises with: its UNet, else its transformer (SD3, Flux, DiTs), else None."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


_placements: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()


def placement(pipe: Any, denoiser: Any) -> tuple[torch.device, torch.dtype]:
    """pipe._execution_device and the denoiser's dtype, looked up again only when what decides
    them changed: the denoiser, its first parameter's device and dtype, offload hooks (accelerate's
    or diffusers' own) and the pipeline's model-offload settings. The look-up walks every module
    of every component (~10 ms on the shapes model): without this, every run and branch paid it."""
    param = next(denoiser.parameters(), None)
    key = (id(denoiser), None if param is None else (param.device, param.dtype),
           getattr(denoiser, "_hf_hook", None) is not None, getattr(denoiser, "_diffusers_hook", None) is not None,
           getattr(pipe, "_offload_gpu_id", None), str(getattr(pipe, "_offload_device", None)))
    try:
        found = _placements.get(pipe)
    except TypeError:  # not weakly referenceable: look up every time
        found = None
    if found is not None and found[0] == key:
        return found[1], found[2]
    device, dtype = pipe._execution_device, denoiser.dtype
    try:
        _placements[pipe] = (key, device, dtype)
    except TypeError:
        pass
    return device, dtype

