"""What a run can give, and why a run of a pipeline nbdiffuse only watches cannot give more.

Runs of the families nbdiffuse drives itself (core/families) can do all of it. Runs of other
pipelines (core/generic.py, watched through diffusers' callback_on_step_end) record only x_t and
say so in params["capabilities"]; the widgets read the same dict and disable what a run cannot do.
"control" says whether a pipeline has a ControlNet (core/controlnet.py), or whether a run had a control picture.
"""
from __future__ import annotations

from typing import Any

from .families import adapter_for, family_for, is_generic
from .generic_control import control_slots

# What a run can be asked for (all of it for the known families).
CAPABILITIES = {"x0": True, "what_if": True, "branch": True, "live_guidance": True, "previews": True}
# What a run of a watched pipeline lacks ("previews" is decided by its latents' layout, at its first step).
XT_ONLY = {"x0": False, "what_if": False, "branch": False, "live_guidance": False}
KNOWN_FAMILIES = "SD, SDXL, SD3, Flux, PixArt"


def xt_only_reason(pipeline: Any, what: str = "x0, what-if and branching", hint: str = "; view='xt' works") -> str:
    """Why a run of a pipeline outside the known families cannot give `what` (one line, for errors and the UI)."""
    return (f"This pipeline ({pipeline or 'unknown'}) gives only the noisy latent x_t at each step: {what} "
            f"need{'' if ',' in what or ' and ' in what else 's'} a family nbdiffuse knows "
            f"({KNOWN_FAMILIES}){hint}.")


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
    if is_generic(pipe):
        return {**CAPABILITIES, **XT_ONLY, **control}
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
