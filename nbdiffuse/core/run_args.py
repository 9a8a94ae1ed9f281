"""The one check of what every run takes (trace/prepare, the generic path and branch): prompts,
steps, seed, control and on_step. Each entry point adds only its own (sizes, image, guidance)."""
from __future__ import annotations

from typing import Any, NamedTuple

from .control import RunControl
from .validate import check_callable, check_prompt, check_seed, check_steps


class RunArgs(NamedTuple):
    prompt: str
    negative_prompt: str
    steps: int
    seed: int
    control: RunControl | None
    on_step: Any


def check_run_args(prompt: Any, negative_prompt: Any, steps: Any, seed: Any, control: Any, on_step: Any) -> RunArgs:
    """Every argument a run shares, checked before any model work (ValueError/TypeError naming it)."""
    prompt = check_prompt(prompt)
    negative_prompt = check_prompt(negative_prompt, "negative_prompt", allow_none=True) or ""
    steps = check_steps(steps)
    seed = check_seed(seed)
    if control is not None and not isinstance(control, RunControl):
        raise TypeError(f"control must be an nbd.RunControl or None, got {type(control).__name__}")
    check_callable("on_step", on_step)
    return RunArgs(prompt, negative_prompt, steps, seed, control, on_step)
