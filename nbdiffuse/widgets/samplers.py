"""What the sampler control's value means to trace().

The control's choices are core.schedulers.scheduler_choices (the pipeline's own scheduler first, under
its short name where it is one of nbdiffuse's samplers, else its class name) and it starts on
core.schedulers.own_scheduler_name. Chosen, the own scheduler runs as the pipeline's own (trace's
scheduler=None), so the run matches pipe(...) even where a short name's table entry would set it up
differently.
"""
from __future__ import annotations

from typing import Any

from ..core.schedulers import own_scheduler_name


def sampler_arg(pipe: Any, name: Any) -> Any:
    """What trace() takes for the control's value: None (the pipeline's own scheduler) for its own, else `name`."""
    return None if isinstance(name, str) and name == own_scheduler_name(pipe) else name
