"""Walks between two runs: spherical interpolation of starting noises (seed_walk) and linear
interpolation of text conditioning (prompt_walk), one run per point t in [0, 1].

A walk's ends are plain runs: at t = 0 and t = 1 nothing is interpolated, so the ends are exactly
`trace(seed=a)` and `trace(seed=b)` (or prompt p's and q's runs), bit for bit.

Per-step noise (ancestral and SDE samplers, e.g. euler_a, draw fresh noise at every step): a run
in between draws it from the generator of the NEARER end (seed a for t <= 0.5, seed b above), in
the order a plain run of that seed draws it; only the starting noise is interpolated. So the ends
are exact and each half of the walk shares one noise sequence; with an ancestral sampler the
pictures move smoothly within each half and may jump once, at the middle. Deterministic samplers
(euler, ddim, dpmpp_2m, ...) draw nothing per step and walk smoothly throughout.
A prompt walk keeps the run's seed; its per-step noise is that seed's in every cell.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .validate import MAX_SEED, check_int, check_prompt

MAX_WALK_POINTS = 1000


def walk_points(name: str, value: Any, check_end: Any) -> tuple[Any, Any, list[float]]:
    """(a, b, [t...]) for a walk axis given as (a, b, n): n points from a to b, both ends included."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ValueError(f"{name} must be a tuple (a, b, n): the two ends and the number of points, got {value!r}")
    a, b, n = value
    a, b = check_end(a, f"{name}[0]"), check_end(b, f"{name}[1]")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_WALK_POINTS:
        raise ValueError(f"{name}[2] (points) must be an int in 2..{MAX_WALK_POINTS}, got {n!r}")
    return a, b, [i / (n - 1) for i in range(n)]


def seed_end(value: Any, name: str) -> int:
    return check_int(name, value, 0, MAX_SEED)


def prompt_end(value: Any, name: str) -> str:
    return check_prompt(value, name)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two noises (computed in float64, returned in a's dtype).
    Exactly a at t = 0 and b at t = 1; a straight line where the two are (nearly) parallel."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    x, y = a.double().flatten(), b.double().flatten()
    cos = float(torch.dot(x, y) / (x.norm() * y.norm()))
    theta = math.acos(max(-1.0, min(1.0, cos)))
    if math.sin(theta) < 1e-6:
        out = (1 - t) * x + t * y
    else:
        out = (math.sin((1 - t) * theta) * x + math.sin(t * theta) * y) / math.sin(theta)
    return out.reshape(a.shape).to(a.dtype)


def lerp_conditioning(a: Any, b: Any, t: float) -> Any:
    """Each float tensor of two text conditionings (family Conditioning objects) at t between them;
    other values (token ids, position ids) must agree and are a's."""
    def mix(x: Any, y: Any) -> Any:
        if isinstance(x, dict):
            return {k: mix(x[k], y[k]) for k in x}
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return torch.lerp(x, y, t)
        if isinstance(x, torch.Tensor) and not torch.equal(x, y):
            raise ValueError("prompt_walk: the two prompts encode to differently shaped conditioning")
        return x

    return dataclasses.replace(a, **{f.name: mix(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)})


@dataclasses.dataclass
class Walk:
    """Run.walk for one point inside a seed walk (seeds = (a, b, t)), a prompt walk (prompts =
    (p, q, t)) or both. The run's own seed and prompt are the nearer ends' (nearer_seed, nearer_prompt)."""

    seeds: tuple | None = None
    prompts: tuple | None = None

    @staticmethod
    def nearer(a: Any, b: Any, t: float) -> Any:
        return a if t <= 0.5 else b

    def start(self, run: Any, cond: Any, latents: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """(conditioning, starting noise) of this point, from the run's own (its nearer ends')."""
        if self.seeds is not None and 0 < self.seeds[2] < 1:
            a, b, t = self.seeds
            other = b if self.nearer(a, b, t) == a else a
            gen = torch.Generator("cpu").manual_seed(other)
            far = run.family.initial_latents(run.height, run.width, gen, run.scheduler)
            latents = slerp(*((latents, far) if other == b else (far, latents)), t)
        if self.prompts is not None and 0 < self.prompts[2] < 1:
            cond = walk_conditioning(run, *self.prompts)
        return cond, latents

    @property
    def inside(self) -> bool:
        """Whether any part of this point lies strictly between its ends (else the run is a plain one)."""
        return any(part is not None and 0 < part[2] < 1 for part in (self.seeds, self.prompts))

    def params(self) -> dict:
        out = {}
        for kind, part in (("seed", self.seeds), ("prompt", self.prompts)):
            if part is not None:
                out[kind] = {"from": part[0], "to": part[1], "t": part[2]}
        return out


def walk_conditioning(run: Any, p: str, q: str, t: float) -> Any:
    """The text conditioning at t between prompts p and q (with the run's negative prompt), for a
    run in a prompt walk and for a branch of one that keeps its prompt (core/branch.py)."""
    from . import encode_cache
    from .prompts import prepare_prompt

    size = (run.height, run.width)
    ends = [encode_cache.encode(run.family, prepare_prompt(run.pipe, text)[0], run.encoded[1], size) for text in (p, q)]
    return lerp_conditioning(ends[0], ends[1], t)


def branch_walk(parent_params: dict, prompt_kept: bool) -> dict | None:
    """The walk a branch of a walk's run inherits: its start noise (a seed walk) always, the
    blended conditioning (a prompt walk) while the branch keeps the prompt and negative prompt."""
    walk = dict(parent_params.get("walk") or {})
    if not prompt_kept:
        walk.pop("prompt", None)
    return walk or None


def attach_walk(run: Any, walk: Any) -> None:
    """Give a prepared run its walk (a point strictly inside; the ends run plain). Refused where a
    run does not start from noise or has no conditioning of its own."""
    from .generic import GenericRun

    if not walk.inside:
        return
    if isinstance(run, GenericRun):
        raise ValueError("seed_walk and prompt_walk need a known model family: this pipeline runs on the generic "
                         "path, whose loop nbdiffuse does not own")
    if run.image is not None:
        raise ValueError("seed_walk and prompt_walk start from noise: leave image out (image to image has no walk)")
    run.walk = walk
