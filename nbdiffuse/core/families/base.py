"""What every family adapter shares: the text conditioning it hands the loop, which model denoises (denoiser_of,
the generic path and ControlNet loading too), and where it runs.

The adapters themselves start at sd.StableDiffusionFamily, which the other families subclass.
"""
from __future__ import annotations

import numbers
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
    _perturbed: dict = field(default_factory=dict, repr=False)

    def rows(self, guided: bool, perturbed: bool = False) -> dict[str, torch.Tensor]:
        """The denoiser's text arguments for a batch: (uncond, cond) guided, (cond) not; perturbed adds the
        prompt's row again for PAG's perturbed pass (core/pag.py), as diffusers' PAG pipelines batch them."""
        if not perturbed:
            return self.both if guided else self.cond
        if guided not in self._perturbed:
            parts = ([self.uncond] if guided else []) + [self.cond, self.cond]
            self._perturbed[guided] = {k: torch.cat([part[k] for part in parts]) for k in self.cond}
        return self._perturbed[guided]


def own_guidance(parameters: Any, fallback: float) -> float:
    """The guidance_scale a pipeline's __call__ defaults to (its signature's `parameters`), else `fallback`: where a UI
    starts, as pipe(...) would run without one."""
    param = parameters.get("guidance_scale")
    default = None if param is None else param.default
    return float(default) if isinstance(default, numbers.Real) and not isinstance(default, bool) else fallback


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

