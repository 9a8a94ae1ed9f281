"""The numbers behind the noise schedule: forward noising, abar / SNR / sigma tables, sampler positions.

Pure math on a diffusers scheduler (no widgets), so the teaching widgets draw exactly what the
scheduler computes and the tests can hold them to scheduler.add_noise and the scheduler's own
attributes.

Two ways to write the same noisy sample x_t at training timestep t (DDPM family):
  variance preserving (DDPM, DDIM):  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
  variance exploding (Euler, k-diffusion): x_t / sqrt(abar_t) = x0 + sigma_t eps,
with sigma_t = sqrt((1 - abar_t) / abar_t) and SNR_t = abar_t / (1 - abar_t) = 1 / sigma_t^2.
Flow-matching models (SD3, Flux) use x_t = (1 - s) x0 + s eps instead; here `signal` and `noise`
are the two coefficients, whatever the family, so one plot serves both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .prediction import sigma_at
from .schedulers import is_flow_matching, make_scheduler, scheduler_name
from .validate import check_int, check_steps

MIN_ABAR = 1e-10  # zero-terminal-SNR schedules end at abar = 0: keep SNR in dB finite for plots


@dataclass
class ScheduleTable:
    """One row per training timestep t = 0 .. T-1 (lists of floats, ready for JSON)."""

    timesteps: list[float]
    abar: list[float]  # signal power: signal^2 / (signal^2 + noise^2)
    snr_db: list[float]  # 10 log10(signal^2 / noise^2)
    sigma: list[float]  # noise / signal: the noise level samplers work with
    flow: bool = False

    def __len__(self) -> int:
        return len(self.timesteps)

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.timesteps, "abar": self.abar, "snr_db": self.snr_db, "sigma": self.sigma, "flow": self.flow}


def _scheduler_of(source: Any) -> Any:
    """A pipeline's scheduler, or the scheduler itself."""
    sched = getattr(source, "scheduler", source)
    if not hasattr(sched, "config") or not hasattr(sched, "set_timesteps"):
        raise TypeError(f"expected a diffusers pipeline or scheduler, got {type(source).__name__}")
    return sched


def num_train_timesteps(source: Any) -> int:
    return int(_scheduler_of(source).config.get("num_train_timesteps", 1000))


def coefficients(source: Any, t: Any) -> tuple[float, float]:
    """(signal, noise) at training timestep t: x_t = signal * x0 + noise * eps (the forward process)."""
    sched = _scheduler_of(source)
    total = num_train_timesteps(sched)
    if is_flow_matching(sched):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= total:
            raise ValueError(f"t must be a number in 0..{total}, got {t!r}")
        # The model's timestep is sigma * T; a shift only changes which timesteps a sampler visits.
        s = float(t) / total
        return 1.0 - s, s
    t = check_int("t", t, 0, total - 1)
    abar = float(sched.alphas_cumprod[t].double())
    return math.sqrt(abar), math.sqrt(max(1.0 - abar, 0.0))


def forward_noise(source: Any, x0: torch.Tensor, t: Any, noise: torch.Tensor) -> torch.Tensor:
    """x_t = signal(t) * x0 + noise(t) * eps: the forward process at one training timestep.

    For DDPM-family schedules this is what DDPMScheduler.add_noise returns; Euler-style schedulers'
    add_noise gives the same sample divided by sqrt(abar_t) (x0 + sigma eps).
    """
    if x0.shape != noise.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    signal, noise_scale = coefficients(source, t)
    return (x0.double() * signal + noise.double() * noise_scale).to(x0.dtype)


def _row(signal: float, noise: float) -> tuple[float, float, float]:
    """(abar, snr_db, sigma) from the two coefficients."""
    power = signal * signal + noise * noise
    abar = signal * signal / power if power > 0 else 0.0
    abar_c = min(max(abar, MIN_ABAR), 1.0 - MIN_ABAR)
    snr_db = 10.0 * math.log10(abar_c / (1.0 - abar_c))
    sigma = noise / signal if signal > 0 else math.inf
    return abar, snr_db, sigma


def schedule_table(source: Any) -> ScheduleTable:
    """abar, SNR (dB) and sigma at every training timestep of a pipeline's (or a scheduler's) schedule."""
    sched = _scheduler_of(source)
    total = num_train_timesteps(sched)
    rows = [_row(*coefficients(sched, t)) for t in range(total)]
    sigma = [min(r[2], 1e12) for r in rows]  # JSON has no infinity
    return ScheduleTable([float(t) for t in range(total)], [r[0] for r in rows], [r[1] for r in rows], sigma,
                         flow=is_flow_matching(sched))


@dataclass
class SamplerPoints:
    """Where one sampler's N steps fall on the schedule (one entry per denoising step)."""

    name: str
    steps: int
    timesteps: list[float]  # the timestep the model sees at each step
    sigma: list[float]  # the noise level of the model input at each step
    abar: list[float]
    snr_db: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, "timesteps": self.timesteps, "sigma": self.sigma,
                "abar": self.abar, "snr_db": self.snr_db}


def step_positions(sched: Any) -> list[int]:
    """Indices into scheduler.timesteps where each step's first model evaluation happens.

    Second-order samplers (Heun, KDPM2) evaluate twice per step and list the timesteps
    [t0, t1, t1, t2, t2, ...]; nbd.trace records one Step per pair, starting at even indices.
    """
    n = len(sched.timesteps)
    if getattr(sched, "order", 1) == 2:
        return list(range(0, n, 2))
    return list(range(n))


def sampler_points(pipe: Any, scheduler: Any = None, steps: int = 20) -> SamplerPoints:
    """The timesteps and noise levels a sampler visits in `steps` steps (what nbd.trace would run)."""
    steps = check_steps(steps)
    sched = make_scheduler(pipe, scheduler)
    sched.set_timesteps(steps)
    flow = is_flow_matching(sched)
    timesteps, sigmas, abars, snrs = [], [], [], []
    for i in step_positions(sched):
        sigma = sigma_at(sched, i)
        signal, noise = (1.0 - sigma, sigma) if flow else (1.0, sigma)
        abar, snr_db, _ = _row(signal, noise)
        timesteps.append(float(sched.timesteps[i]))
        sigmas.append(sigma)
        abars.append(abar)
        snrs.append(snr_db)

    name = scheduler if isinstance(scheduler, str) else scheduler_name(sched)
    return SamplerPoints(name, steps, timesteps, sigmas, abars, snrs)
