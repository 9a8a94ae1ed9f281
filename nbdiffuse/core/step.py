"""Step: what one denoising step leaves behind (tensors on the CPU, numbers to re-weigh and replay it)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Step:
    """One denoising step k. Tensors are (C, H, W) on the CPU in the model's dtype.

    `eps_cond` / `eps_uncond` are the raw model outputs (noise, v or flow, as the model
    predicts) with and without the prompt; `eps_uncond` is None where guidance was off
    (guidance <= 1 runs the model once, as diffusers does). Runs of pipelines nbdiffuse only
    watches through diffusers' callback (core/generic.py) have latents alone: pred_x0, eps_cond and
    eps_uncond are None there.
    """

    index: int
    timestep: float
    sigma: float | None
    guidance: float
    latents: torch.Tensor
    pred_x0: torch.Tensor | None  # None for pipelines that give only x_t (core/generic.py)
    eps_cond: torch.Tensor | None  # None there too
    eps_uncond: torch.Tensor | None
    x0_coeff: float  # B in x0 = A * model_input + B * output; re-weighs guidance without a model call
    xt_scale: float  # multiplies `latents` into the variance-preserving form the model sees next
    seconds: float = 0.0
    extra_outputs: tuple = ()  # guided outputs of a 2nd-order sampler's extra evaluations (for replay)
    attention: torch.Tensor | None = None  # trace(attention=True): (prompt tokens, h, w) fp16 maps (core/attention.py)
    # ControlNet runs (core/controlnet.py): the control scale asked at this step, and the control's strength
    # (L2 norm of the residuals it added to the prompt's row; 0 outside its window or at scale 0). None without control.
    control_scale: float | None = None
    control_strength: float | None = None
    # PAG runs (core/pag.py): the prompt's prediction through the perturbed layers, and the pag scale the step's
    # sum used (after pag_adaptive_scale). None without PAG.
    eps_perturbed: torch.Tensor | None = None
    pag_scale: float | None = None

    @property
    def guided(self) -> bool:
        return self.eps_uncond is not None

    def __repr__(self) -> str:
        sigma = "None" if self.sigma is None else f"{self.sigma:.4g}"
        return f"Step({self.index}, timestep={self.timestep:.4g}, sigma={sigma}, guidance={self.guidance:g})"
