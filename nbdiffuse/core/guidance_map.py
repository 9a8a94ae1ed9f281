"""Where the prompt acts at a step: how far apart the conditional and unconditional x0 predictions are."""
from __future__ import annotations

from typing import Any

import torch


def guidance_map(traj: Any, k: int) -> torch.Tensor:
    """(h, w) float tensor over the latent grid: at each latent pixel, the distance (over channels) between
    the x0 the model predicts with the prompt and the x0 it predicts with the negative prompt at step k.

    Zero where prompt and negative prompt agree: there guidance changes nothing, whatever its scale.
    The stored (cond, uncond) pair of the step is all it needs (Trajectory.guided_x0 at guidance 1 and 0):
    no model call. A step that ran without classifier-free guidance, or a model that takes guidance as
    an input (Flux-dev, LCM), has no unconditional prediction: refused, saying why.
    """
    cond = traj.guided_x0(k, 1.0).float()
    uncond = traj.guided_x0(k, 0.0).float()
    apart = cond - uncond
    return apart.reshape(-1, *apart.shape[-2:]).norm(dim=0)
