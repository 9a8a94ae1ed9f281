"""The clean-latent prediction x0 from any model output, for any scheduler.

diffusers' callbacks do not expose x0 and several samplers (DPM-Solver, UniPC, LMS,
flow matching) never compute it, so it is derived here from the model output.
The model sees x_in = scale_model_input(x_t) = alpha * x0 + s * eps (variance preserving),
with alpha = 1/sqrt(1 + sigma^2), s = sigma/sqrt(1 + sigma^2) for the scheduler's sigma.
Then x0 = A * x_in + B * output, and B is all guided_x0 needs to re-weigh guidance later.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from .schedulers import is_flow_matching


def sigma_at(scheduler: Any, index: int) -> float:
    """The noise level (sigma) of the model input at position `index` of scheduler.timesteps."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and len(sigmas) > index:
        return float(sigmas[index])
    # DDIM, DDPM, PNDM and friends keep no sigmas: derive them from alphas_cumprod.
    t = int(scheduler.timesteps[index])
    alpha_bar = float(scheduler.alphas_cumprod[t])
    return math.sqrt((1.0 - alpha_bar) / alpha_bar)


def x0_coefficients(scheduler: Any, sigma: float) -> tuple[float, float]:
    """(A, B) with x0 = A * model_input + B * model_output."""
    if is_flow_matching(scheduler):
        # Flow matching: x_t = (1 - sigma) x0 + sigma * noise, output v = noise - x0.
        return 1.0, -sigma
    kind = scheduler.config.get("prediction_type", "epsilon")
    alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
    s = sigma * alpha
    if kind == "epsilon":
        return 1.0 / alpha, -s / alpha
    if kind == "v_prediction":
        return alpha, -s
    if kind == "sample":
        return 0.0, 1.0
    raise ValueError(f"prediction_type {kind!r} is not supported; expected epsilon, v_prediction or sample")


def as_sampler_goes_on(scheduler: Any, x0: torch.Tensor) -> torch.Tensor:
    """x0 as the sampler itself goes on with it: thresholded (dynamic thresholding) or clipped (clip_sample to
    clip_sample_range) where its class does that and its config asks for it, else as it is.

    Only a setting the class's __init__ takes counts: from_config keeps every key of the config it was made from,
    so an Euler sampler made from a DDIM config with clip_sample on has clip_sample in its config and never clips."""
    takes = inspect.signature(type(scheduler).__init__).parameters
    config = scheduler.config
    if "thresholding" in takes and config.get("thresholding") and hasattr(scheduler, "_threshold_sample"):
        return scheduler._threshold_sample(x0)
    if "clip_sample" in takes and config.get("clip_sample") and not config.get("thresholding"):
        bound = float(config.get("clip_sample_range", 1.0))
        return x0.clamp(-bound, bound)
    return x0
