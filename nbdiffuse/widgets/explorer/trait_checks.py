"""The Explorer's settable traits, checked when they are set, not when a run ends.

`ex.max_runs = "x"` used to be accepted, then to raise in the worker thread when the next run
ended: the thread died, status stayed "running" and the next Generate never ran. The same held,
less dramatically, for every control a notebook can write (`ex.steps = 0`, `ex.guidance = nan`,
`ex.seed = -1`, `ex.strength = 7`, ...): each now raises at the assignment, with the message
generate() would give (core/validate.py), so the kernel's state never holds a value a run refuses.
export_dir is the exception: whether a path is a folder can change between setting it and
exporting, so ex.export checks it when it writes (export_files.export_path).
The checks are traitlets validators: the browser's writes go through them too (it refuses the
same values already, from `input_limits`).

The Explorer takes these by inheriting ExplorerTraitChecks (a plain mixin; traitlets collects its
@validate handlers from every base class).
"""
from __future__ import annotations

import math
from typing import Any

import traitlets as t

from ...core.pag import MAX_PAG_SCALE, check_pag_value
from ...core.schedulers import scheduler_choices
from ...core.families import adapter_for
from ...core.img2img import check_strength
from ...core.validate import (MAX_STEPS, check_choice, check_guidance_value, check_prompt, check_seed, check_size,
                              check_steps)
from .run_tree import check_max_runs

VIEW_MODES = ("both", "x0", "xt")  # Explorer.view

class CheckedAttribute:
    """A plain attribute whose every assignment goes through `check` (for settings that are not traits)."""

    def __init__(self, check: Any):
        self.check = check

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = "_checked_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj.__dict__[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = self.check(value)


class ExplorerTraitChecks:
    """Validators for every Explorer trait a user (or the browser) sets; max_runs as a checked attribute."""

    max_runs = CheckedAttribute(check_max_runs)

    @t.validate("prompt")
    def _check_prompt_trait(self, proposal: Any) -> str:
        return check_prompt(proposal["value"])

    @t.validate("negative_prompt")
    def _check_negative_prompt_trait(self, proposal: Any) -> str:
        return check_prompt(proposal["value"], "negative_prompt")

    @t.validate("seed")
    def _check_seed_trait(self, proposal: Any) -> int:
        return check_seed(proposal["value"])

    @t.validate("steps")
    def _check_steps_trait(self, proposal: Any) -> int:
        return check_steps(proposal["value"])

    @t.validate("guidance")
    def _check_guidance_trait(self, proposal: Any) -> float:
        return check_guidance_value(proposal["value"])

    @t.validate("pag_scale")
    def _check_pag_scale_trait(self, proposal: Any) -> float:
        return check_pag_value("pag_scale", proposal["value"], MAX_PAG_SCALE)

    @t.validate("guidance_max")
    def _check_guidance_max_trait(self, proposal: Any) -> float:
        value = proposal["value"]
        if not math.isfinite(value) or value <= 0:  # no upper bound: generate() raises it to any guidance it runs
            raise ValueError(f"guidance_max (the slider's top) must be a finite number > 0, got {value}")
        return value

    @t.validate("strength")
    def _check_strength_trait(self, proposal: Any) -> float:
        return check_strength(proposal["value"])

    @t.validate("view")
    def _check_view_trait(self, proposal: Any) -> str:
        return check_choice("view", proposal["value"], VIEW_MODES)

    @t.validate("frame")
    def _check_frame_trait(self, proposal: Any) -> int:
        value = proposal["value"]
        if not -1 <= value < MAX_STEPS:
            raise ValueError(f"frame must be a step index from 0 to {MAX_STEPS - 1}, or -1 to follow the newest "
                             f"step; got {value}")
        return value

    @t.validate("height", "width")
    def _check_side_trait(self, proposal: Any) -> int:
        name, value = proposal["trait"].name, proposal["value"]
        if value == 0:  # the model's own size
            return value
        pipe = getattr(self, "pipe", None)
        factor = 1
        if pipe is not None:
            factor = int(adapter_for(pipe).vae_factor)
        return check_size(name, value, factor)

    @t.validate("scheduler")
    def _check_scheduler_trait(self, proposal: Any) -> str:
        value = proposal["value"]
        if getattr(self, "_quiet", 0):  # the Explorer's own write (a scheduler object's class name, a saved run's)
            return value
        pipe = getattr(self, "pipe", None)
        if pipe is not None:
            return check_choice("scheduler", value, scheduler_choices(pipe))
        options = list(getattr(self, "scheduler_options", []) or [])
        return check_choice("scheduler", value, options) if options else value
