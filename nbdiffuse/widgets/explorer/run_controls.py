"""What the Explorer's controls show when a run starts: the values it runs with.

A programmatic run (ex.generate(seed=3), ex.branch(guidance=8)) or a branch from the page moves the
controls to what runs, so that the page never shows settings other than the run's. The widget
writes these values quietly (they must not steer the run being replaced: widget.Explorer._quietly).
"""
from __future__ import annotations

import math
from typing import Any

from ...core.schedulers import scheduler_name

CLEARED = {"error": "", "error_details": ""}


def controls_of_run(run: Any, scheduler: Any, sizes: bool, guidance_max: float) -> dict[str, Any]:
    """Control values for a prepared core Run; `scheduler` as given (a name, or a scheduler object),
    `sizes` whether the model offers size choices (else height and width stay the model's own)."""
    values: dict[str, Any] = {
        "prompt": run.prompt, "negative_prompt": run.negative_prompt, "seed": run.seed, "steps": run.steps,
        "guidance_max": float(max(guidance_max, math.ceil(max(run.schedule)))),
        "guidance": float(run.schedule[0]),
        "scheduler": scheduler if isinstance(scheduler, str) else scheduler_name(run.scheduler),
    }
    if sizes:
        values.update(height=run.height, width=run.width)
    return {**values, **CLEARED, "guidance_note": ""}


def controls_of_branch(parent: Any, at: int, changes: dict, guidance: float) -> dict[str, Any]:
    """Control values for a branch of `parent` at step `at` with `changes`; `guidance` the slider's value now.

    The slider follows the branch it steers; guidance_note says so when it moved without the user."""
    values: dict[str, Any] = {key: changes.get(key, parent.params[key])
                              for key in ("prompt", "negative_prompt", "seed", "steps", "scheduler")}
    note = ""
    if isinstance(changes.get("guidance"), (int, float)):
        new = float(changes["guidance"])
        if new != guidance:
            note = (f"Guidance {guidance:g} → {new:g}: the branch from step "
                    f"{at + 1} runs with it; the slider steers it, and Generate uses it")
        values["guidance"] = new
    return {**values, "guidance_note": note, **CLEARED}
