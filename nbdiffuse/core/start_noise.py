"""The start noise x_T of a pipeline that runs its own loop (core/generic.py), where no sampler call sees it whole.

The generic path takes x_T from the first scheduler.step call's `sample`. A pipeline that steps its picture piece
by piece (StableDiffusionPanoramaPipeline wider than its window of 64 latent pixels: MultiDiffusion) hands its
sampler one window at a time, so that sample is a window, not x_T. What its `prepare_latents` returned is: this
keeps it, for the run's first step to take where the sample was of another shape than the latents.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import torch


@contextlib.contextmanager
def drawn_latents(pipe: Any) -> Iterator[dict]:
    """While a pipeline runs: its prepare_latents wrapped (on the instance, then put back as it was) to keep the
    first tensor it returns (a tuple's first: Flux's (latents, ids)) as `made["latents"]`."""
    made: dict[str, torch.Tensor] = {}
    own = getattr(pipe, "prepare_latents", None)
    if not callable(own):
        yield made
        return
    before = pipe.__dict__.get("prepare_latents")

    @functools.wraps(own)
    def prepare(*args: Any, **kwargs: Any) -> Any:
        out = own(*args, **kwargs)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(first, torch.Tensor) and "latents" not in made:
            made["latents"] = first
        return out

    pipe.prepare_latents = prepare
    try:
        yield made
    finally:
        if before is None:
            del pipe.prepare_latents
        else:
            pipe.prepare_latents = before
