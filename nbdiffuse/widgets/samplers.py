"""The sampler control's choices: the pipeline's own scheduler first, then nbdiffuse's named samplers.

The own scheduler is the default (a run then matches pipe(...)); it shows under its short name where
it is one of nbdiffuse's samplers (core/schedulers.py), else under its class name (LCMScheduler,
CogVideoXDDIMScheduler...), and runs as the pipeline's own scheduler (trace's scheduler=None).
"""
from __future__ import annotations

from typing import Any

from ..core import schedulers
from ..core.schedulers import scheduler_name


def own_sampler(pipe: Any) -> str:
    """The pipeline's own scheduler as the control shows it."""
    return scheduler_name(pipe.scheduler)  # hook: the core's name of a pipeline's own scheduler, once it has one


def sampler_options(pipe: Any) -> list[str]:
    """The sampler control's choices for `pipe`: its own scheduler first where it has no short name."""
    options, own = schedulers(pipe), own_sampler(pipe)
    return options if own in options else [own, *options]


def sampler_arg(pipe: Any, name: Any) -> Any:
    """What trace() takes for the control's value: None (the pipeline's own scheduler) for its own, else `name`."""
    return None if isinstance(name, str) and name == own_sampler(pipe) else name
