"""Swapping an Explorer's model (ex.set_pipeline): the controls that follow, and the runs of the old model.

Kept out of the widget class because a swap is its own small story: which control values the user
chose (kept) and which were the old model's defaults (replaced by the new model's); old runs let go
of the old model so its memory can be freed, remembering weakly which model made them; and a branch
of such a run is allowed with another model of its family (one latent space), refused across families.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any

from ...core.schedulers import scheduler_choices
from ...core.model_identity import UNKNOWN, model_change
from ..control_defaults import model_defaults

ADVICE = "scrub, compare or export it, or ex.set_pipeline(...) back to its model to branch it"
SWAP_STOP_TIMEOUT = 120.0  # s: set_pipeline waits this long for a running run to stop after its current step
CONTROL_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "control_scale")


def defaults_of(pipe: Any) -> dict[str, Any]:
    """The control values a model starts with (none without a model): what the user left as is."""
    return model_defaults(pipe, {}) if pipe is not None else {}


def controls_after(was: dict[str, Any], controls: dict[str, Any], new: Any) -> dict[str, Any]:
    """The control values for model `new`: one the user changed from the old defaults `was` is kept where
    `new` takes it; the rest (and all, when something kept does not suit `new`) are `new`'s defaults."""
    kept = {key: value for key, value in controls.items() if key not in was or value != was[key]}
    if kept.get("scheduler") not in scheduler_choices(new):
        kept.pop("scheduler", None)
    try:
        values = model_defaults(new, kept)
    except (TypeError, ValueError):  # something kept does not suit the new model: its own defaults
        values = model_defaults(new, {})
    values.pop("image_size", None)  # the shown run keeps its size
    return values


class MadeBy:
    """Which model made the runs whose model was swapped out: run id -> a weak reference to it."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}

    def let_go_of(self, history: list, old: Any) -> None:
        """Detach the runs of a replaced model from it (its memory can go), keeping their approx decoders."""
        for traj in list(history):
            if traj.pipe is old:
                with contextlib.suppress(Exception):  # no approx fit: the run keeps the frames already made
                    traj.approx_decoder()
                traj.pipe = None
                self.refs[traj.id] = weakref.ref(old)

    def model_change(self, parent: Any, pipe: Any, at: int) -> str | None:
        """Branching `parent` with `pipe`: None when it made the run; a notice when it is another model
        of the run's family (one latent space); refused across families (core/model_identity.py)."""
        ref = self.refs.get(parent.id)
        maker = parent.pipe if parent.pipe is not None else ref() if ref is not None else UNKNOWN
        return model_change(parent.params, pipe, at, maker, "the Explorer", ADVICE)
