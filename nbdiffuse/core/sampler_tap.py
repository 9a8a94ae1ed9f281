"""x0 of a pipeline that runs its own loop (core/generic.py), read from what its sampler is given.

diffusers' callback_on_step_end sees only the latents (diffusers #3579), but the generic path already wraps the
run's scheduler.step: the first call of each step gets the model output the pipeline made, guided the way that
pipeline guides (its (cond, uncond) pair combined, a true-CFG norm, whatever it does), and the sample x_t. x0 is
then what the sampler's own prediction type makes of them, by the formula the families' loop records
(core/prediction.py): x0 = A * scale_model_input(x_t) + B * output. On a pipeline that also has a family the two
are the same numbers (tests/core/test_generic_x0.py compares them with torch.equal).

A sampler that clips or thresholds its x0 (clip_sample: Kandinsky 3's DDPM) goes on with the clipped one, and so
does the recorded x0 (`prediction.as_sampler_goes_on`, as in the families' loop). What stays out of reach: the
(cond, uncond) pair itself, so no what-if, no branch. SCM's "trigflow" (Sana Sprint) has its own formula, at its
angle (`_trigflow`). A sampler with neither sigmas nor that formula (Stable Cascade's prior), or a model output of
another shape than x_t (and not x_t's channels plus a learned variance; Panorama's windows when the picture is wider
than one), gives no x0: the run says so (capabilities["x0"] False) and shows x_t.
"""
from __future__ import annotations

from typing import Any

import torch

from .prediction import as_sampler_goes_on, x0_coefficients
from .run import model_input


class SamplerTap:
    """Keeps the first evaluation of a step (`seen`, called by the wrapped scheduler.step before it steps, while
    the sampler still stands at that step), and turns it into x0 once the step's sigma is known (`x0`)."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._t: Any = None
        self.lacking: str | None = None  # why the last step gave no x0, in words (None: unknown, or it gave one)

    def seen(self, args: tuple, kwargs: dict) -> None:
        """scheduler.step(model_output, timestep, sample, ...)'s arguments, however they were passed."""
        self._pending = None
        out = kwargs.get("model_output", args[0] if args else None)
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        sample = kwargs.get("sample", args[2] if len(args) > 2 else None)
        if not isinstance(out, torch.Tensor) or not isinstance(sample, torch.Tensor):
            return
        try:  # the model's input as the families compute it (scale_model_input: a DDPM-family sampler's scaling)
            x_in = model_input(self.scheduler, sample, t)
        except Exception:  # noqa: BLE001  (a sampler that cannot scale here: no x0 for this step)
            return
        self._t = t
        if out.shape != x_in.shape:
            channels = x_in.shape[1] if x_in.ndim == 4 else None
            if channels is None or out.ndim != 4 or out.shape[1] != 2 * channels or out.shape[2:] != x_in.shape[2:]:
                self.lacking = f"its model output, {tuple(out.shape)}, is not of x_t's shape, {tuple(x_in.shape)}"
                return
            out = out[:, :channels]  # a learned variance beside the prediction, as DDPMScheduler splits it off
        self._pending = (out, x_in)

    def x0(self, sigma: float | None) -> tuple[torch.Tensor | None, float]:
        """(x0, B) of the step just made, at its noise level `sigma`; (None, 0.0) where it cannot be read."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None, 0.0
        if self.scheduler.config.get("prediction_type") == "trigflow":
            return self._trigflow(*pending)
        try:
            a, b = x0_coefficients(self.scheduler, sigma) if sigma is not None else self._terminal()
        except (ValueError, TypeError, IndexError, AttributeError):  # a prediction type without that formula
            self.lacking = (f"its sampler, {type(self.scheduler).__name__}, has no noise level nbdiffuse can read"
                            if sigma is None else f"its sampler's prediction type, "
                            f"{self.scheduler.config.get('prediction_type')!r}, has no x0 formula here")
            return None, 0.0
        out, x_in = pending
        return as_sampler_goes_on(self.scheduler, a * x_in + b * out), float(b)

    def loop_scale(self) -> float:
        """What multiplies a step's x_t into the variance-preserving form (cos(s) x0 + sin(s) noise, as Step.xt_scale
        records it): 1 / sigma_data for SCM's trigflow, whose loop keeps x_t sigma_data times that; else 1."""
        config = self.scheduler.config
        return 1.0 / float(config.sigma_data) if config.get("prediction_type") == "trigflow" else 1.0

    def _trigflow(self, out: torch.Tensor, x_in: torch.Tensor) -> tuple[torch.Tensor | None, float]:
        """SCM's "trigflow" (Sana Sprint): its timesteps are angles s, and the sampler's x0 is cos(s) x_t - sin(s) F
        in its loop's scale, sigma_data times the picture's; divided by sigma_data, as the pipeline divides its
        last one before decoding (the same operations on the same tensors: the last step's x0 is what it returns)."""
        index = getattr(self.scheduler, "step_index", None)  # already past the step just made
        if not index:
            return None, 0.0
        s = self.scheduler.timesteps[index - 1]
        sigma_data = self.scheduler.config.sigma_data
        return (torch.cos(s) * x_in - torch.sin(s) * out) / sigma_data, -float(torch.sin(s)) / sigma_data

    def _terminal(self) -> tuple[float, float]:
        """(A, B) at a step without a finite sigma: zero terminal SNR (rescale_betas_zero_snr, CogView3-Plus's
        sampler) puts alpha_bar at 0 on the first step, where a v-prediction still gives x0 = -v
        (x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v); any other prediction gives none there."""
        t = self._t
        alpha_bar = float(self.scheduler.alphas_cumprod[int(t.flatten()[0] if isinstance(t, torch.Tensor) else t)])
        if alpha_bar != 0.0 or self.scheduler.config.get("prediction_type") != "v_prediction":
            raise ValueError("no x0 at this step")
        return 0.0, -1.0
