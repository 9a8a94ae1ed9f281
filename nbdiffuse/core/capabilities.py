"""What a run can give, and why a run of a pipeline nbdiffuse only watches cannot give more.

Runs of the families nbdiffuse drives itself (core/families) can do all of it. Runs of other
pipelines (core/generic.py, watched through diffusers' callback_on_step_end) record x_t and, read from what
their sampler is given (core/sampler_tap.py), x0, but not the (cond, uncond) pair: no what-if, no branch, no
live guidance. They say so in params["capabilities"]; the widgets read the same dict and disable what a run
cannot do.
"control" says whether a pipeline has a ControlNet (core/controlnet.py), or whether a run had a control picture.
"""
from __future__ import annotations

from typing import Any

from .families import adapter_for, family_for, is_generic
from .generic_control import control_slots

# What a run can be asked for (all of it for the known families).
CAPABILITIES = {"x0": True, "what_if": True, "branch": True, "live_guidance": True, "previews": True}
# What a run of a watched pipeline lacks ("previews" is decided by its latents' layout, and "x0" by what its
# sampler is given, at its first step: WATCHED with x0, XT_ONLY without).
WATCHED = {"what_if": False, "branch": False, "live_guidance": False}
XT_ONLY = {"x0": False, **WATCHED}
KNOWN_FAMILIES = "SD, SDXL, SD3, Flux, PixArt"


def xt_only_reason(pipeline: Any, what: str = "x0, what-if and branching", hint: str = "; view='xt' works",
                   why: str | None = None) -> str:
    """Why a run that recorded x_t alone (a watched pipeline whose sampler's prediction cannot be read) cannot
    give `what` (one line, for errors and the UI); `why`: what kept x0 out of reach, where the run found it."""
    because = f" ({why})" if why else ""
    return (f"This pipeline ({pipeline or 'unknown'}) gives only the noisy latent x_t at each step{because}: {what} "
            f"{_need(what)} a family nbdiffuse knows ({KNOWN_FAMILIES}){hint}.")


def watched_reason(pipeline: Any, what: str = "what-if, branching and live guidance", x0: bool = True,
                   hint: str = "") -> str:
    """Why a run of a pipeline outside the known families cannot give `what`: it runs its own loop, so x_t and
    x0 (read from its sampler) are all nbdiffuse sees of it; without x0 (x0=False), xt_only_reason's words."""
    if not x0:
        return xt_only_reason(pipeline, what, hint)
    return (f"This pipeline ({pipeline or 'unknown'}) runs its own loop: nbdiffuse reads each step's x_t and x0 "
            f"from its sampler, not the (cond, uncond) pair, so {what} {_need(what)} a family nbdiffuse knows "
            f"({KNOWN_FAMILIES}){hint}.")


def run_reason(params: dict, what: str, hint: str = "") -> str:
    """watched_reason for a recorded run of a watched pipeline (with or without x0, as it ran)."""
    return watched_reason(params.get("pipeline"), what, x0=bool((params.get("capabilities") or {}).get("x0")),
                          hint=hint)


def _need(what: str) -> str:
    return "need" if "," in what or " and " in what else "needs"


# What a run lacks when guidance is a model input (Flux-dev, guidance-embedding UNets): no (cond, uncond) pair.
DISTILLED = {"what_if": False}


def distilled_reason(pipeline: Any) -> str:
    """Why a run whose model takes guidance as an input has no what-if (one line, for errors and the UI)."""
    return (f"This model ({pipeline or 'unknown'}) takes guidance as an input (guidance-distilled: one model "
            "evaluation a step, no unconditional prediction), so a what-if needs a new run: branch from the step "
            "with the other guidance. Live guidance changes work.")


def pipeline_capabilities(pipe: Any) -> dict[str, bool]:
    """What runs of `pipe` will be able to give (None, no model yet: everything)."""
    control = {"control": control_slots(pipe) > 0}
    if pipe is None:
        return {**CAPABILITIES, **control}
    if is_generic(pipe):  # x0 where its sampler's prediction can be read (each run says, at its first step)
        return {**CAPABILITIES, **WATCHED, **control}
    try:
        distilled = family_for(pipe).guidance_kind == "distilled"
    except TypeError:
        distilled = False
    return {**CAPABILITIES, **(DISTILLED if distilled else {}), **control}


def run_capabilities(params: dict) -> dict[str, bool]:
    """What a recorded run can give: CAPABILITIES, less what its params say it lacks (and a distilled
    model's runs, saved before they said so, have no what-if either); "control": whether it ran with a
    control picture."""
    lacks = DISTILLED if params.get("guidance_kind") == "distilled" else {}
    return {**CAPABILITIES, **lacks, **(params.get("capabilities") or {}), "control": "control" in params}


def default_size(pipe: Any) -> tuple[int, int] | None:
    """(height, width) a run of `pipe` makes when given no size, for any pipeline nbdiffuse can run (its
    family's, or what its own __call__ falls back to: ZImagePipeline 1024x1024); None where it cannot tell
    (then height and width must be given). A TypeError for a pipeline nbdiffuse cannot run."""
    return adapter_for(pipe).default_size()
