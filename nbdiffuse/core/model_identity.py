"""Which model made a run, and what to do when another one continues or decodes it.

One definition, used by nbd.branch, Trajectory.attach (so Trajectory.load(pipe=) and
Explorer.from_files(pipe=)) and the Explorer's own branching:

- another family (params["family"], or for pipelines nbdiffuse only watches, another pipeline
  class) means another latent space: the latents mean something else there and its VAE would draw
  the wrong picture, so continuing or attaching is refused, even when the channel counts agree
  (SD and SDXL both have 4);
- the same family, another model: the latent space is shared, so a branch runs, and says so in the
  run's notices ("steps 1 to k came from A, the rest from B"), as the Explorer always did; nbd.branch
  also warns (ModelMismatchWarning), as a script has no widget to show the notice;
- the same model: the very pipeline object that made the run, or, for a run whose maker is not at
  hand (loaded from a file, or let go by Explorer.set_pipeline), the same non-empty model name and
  pipeline class, with the same LoRA.
"""
from __future__ import annotations

import re
import sys
import warnings
from typing import Any

from .families import adapter_for
from .lora import lora_params
from .pipe_attrs import model_name

UNKNOWN = object()  # the model object that made a run is not known: decide by name


class ModelMismatchWarning(UserWarning):
    """A run is continued by another model of its family than the one that made it."""


def model_words(model: Any, lora: Any) -> str:
    """'org/model', with its LoRA and scale where it had one: for notices and errors."""
    words = str(model or "an unknown model")
    if lora:
        words += f" with LoRA {lora.get('source') or ', '.join(lora.get('adapters') or [])}"
        if lora.get("scale") is not None:
            words += f" at {lora['scale']:g}"
    return words


def _now(pipe: Any) -> tuple[str, Any]:
    return model_name(pipe), lora_params(pipe)


_ADVICE = "use a model of its family, or open the run without pipe= to scrub, compare or export it"


def check_family(params: dict, pipe: Any, what: str, holder: str = "pipe", advice: str = _ADVICE) -> None:
    """ValueError when `pipe` is of another family (latent space) than the run of `params`."""
    family = adapter_for(pipe).name
    made_in = params.get("family")
    same = made_in == family and (family != "generic" or params.get("pipeline") == type(pipe).__name__)
    if made_in is not None and not same:
        made_by = model_words(params.get("model") or params.get("pipeline"), params.get("lora"))
        name, lora = _now(pipe)
        raise ValueError(f"this run was made by {made_by} ({made_in}); {holder} now holds "
                         f"{model_words(name or type(pipe).__name__, lora)} ({family}), whose latents mean something "
                         f"else, so it cannot {what}. {advice[0].upper() + advice[1:]}")


def same_model(params: dict, pipe: Any, maker: Any = UNKNOWN) -> bool:
    """Whether `pipe` is the model that made the run of `params` (`maker`: the model object that did, when known)."""
    name, lora = _now(pipe)
    named = params.get("model") == name and params.get("pipeline") == type(pipe).__name__
    same = named if maker is UNKNOWN else (maker is pipe or (named and bool(params.get("model"))))
    return same and (params.get("lora") or None) == lora


def model_change(params: dict, pipe: Any, at: int, maker: Any = UNKNOWN, holder: str = "pipe",
                 advice: str = _ADVICE) -> str | None:
    """Continuing the run of `params` after step `at` with `pipe`: None when it made the run, else the
    notice saying which model made which steps; ValueError across families."""
    check_family(params, pipe, "continue the run", holder, advice)
    if same_model(params, pipe, maker):
        return None
    name, lora = _now(pipe)
    made_by = model_words(params.get("model") or params.get("pipeline"), params.get("lora"))
    return f"steps 1 to {at + 1} came from {made_by}, the rest from {model_words(name or type(pipe).__name__, lora)}"


def quiet_in(module: str) -> None:
    """No ModelMismatchWarning for nbd.branch calls made from `module` (a UI that shows the notice itself)."""
    warnings.filterwarnings("ignore", category=ModelMismatchWarning, module=re.escape(module))


def branch_notice(traj: Any, pipe: Any, at: int) -> str | None:
    """nbd.branch's check: model_change for the run's own maker (traj.pipe, when attached), warned."""
    notice = model_change(traj.params, pipe, at, UNKNOWN if traj.pipe is None else traj.pipe)
    if notice is not None:
        warnings.warn(f"nbd.branch: {notice} (another model of the run's family; traj.notices keeps this)",
                      ModelMismatchWarning, stacklevel=_outside_core())
    return notice


def _outside_core() -> int:
    """The stack level of the first caller outside nbdiffuse.core: the warning names the user's line (or
    the UI module that asked, which quiet_in can silence), whichever core functions lie between."""
    frame, level = sys._getframe(2), 2  # 1: branch_notice itself
    while frame is not None and frame.f_globals.get("__name__", "").startswith("nbdiffuse.core"):
        frame, level = frame.f_back, level + 1
    return level
