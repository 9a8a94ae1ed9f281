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

from ...core import schedulers
from ...core.families import adapter_for, is_generic
from ...core.lora import lora_params
from ...core.pipe_attrs import model_name
from ..control_defaults import model_defaults
from ..plain_words import model_words

SWAP_STOP_TIMEOUT = 120.0  # s: set_pipeline waits this long for a running run to stop after its current step
CONTROL_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler")


def defaults_of(pipe: Any) -> dict[str, Any]:
    """The control values a model starts with (none without a model): what the user left as is."""
    return model_defaults(pipe, {}) if pipe is not None else {}


def controls_after(was: dict[str, Any], controls: dict[str, Any], new: Any) -> dict[str, Any]:
    """The control values for model `new`: one the user changed from the old defaults `was` is kept where
    `new` takes it; the rest (and all, when something kept does not suit `new`) are `new`'s defaults."""
    kept = {key: value for key, value in controls.items() if key not in was or value != was[key]}
    if kept.get("scheduler") not in schedulers(new):
        kept.pop("scheduler", None)
    try:
        values = model_defaults(new, kept)
    except (TypeError, ValueError):  # something kept does not suit the new model: its own defaults
        values = model_defaults(new, {})
    values.pop("image_size", None)  # the shown run keeps its size
    return values


def view_after(view: str, old: Any, new: Any) -> str:
    """The view mode after a swap: it follows the model where it was the old model's default."""
    if view == ("xt" if old is not None and is_generic(old) else "both"):
        return "xt" if is_generic(new) else "both"
    return view


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
        of the run's family (one latent space); refused across families."""
        p = parent.params
        made_by = model_words(p.get("model") or p.get("pipeline"), p.get("lora"))
        now = model_words(model_name(pipe, type(pipe).__name__), lora_params(pipe))
        family = adapter_for(pipe).name
        if p.get("family") != family:
            raise ValueError(f"this run was made by {made_by} ({p.get('family')}); the Explorer now holds {now} "
                             f"({family}), whose latents mean something else, so it cannot continue the run. "
                             "Scrub, compare or export it, or ex.set_pipeline(...) back to its model to branch it")
        named = p.get("model") == model_name(pipe) and p.get("pipeline") == type(pipe).__name__
        ref = self.refs.get(parent.id)
        if parent.pipe is not None or ref is not None:  # the model object is known: anonymous ones match by it
            same = (parent.pipe if parent.pipe is not None else ref()) is pipe or (named and bool(p.get("model")))
        else:  # a run loaded from a file: by name
            same = named
        if same and (p.get("lora") or None) == lora_params(pipe):
            return None
        return f"steps 1 to {at + 1} came from {made_by}, the rest from {now}"
