"""The Explorer's PAG controls (perturbed-attention guidance, core/pag.py), for any diffusers PAG pipeline (the
ones nbdiffuse's loop runs record their PAG per step; HunyuanDiT's and Sana's take the scale in their own loop).

`pag_available`: the pipeline is one (the PAG slider under Guidance shows only then); `pag_scale`: the scale the
next run uses (Generate passes it as pipe_kwargs["pag_scale"], "Branch here" as the branch's pag_scale where it
differs from the shown run's); `pag_used`: the shown run's PAG scale per step (empty for a run without PAG), where
the what-if's PAG slider starts (explore.js: the what-if re-weighs guidance and PAG, no model call).
"""
from __future__ import annotations

from typing import Any

from ...core.pag import is_pag, own_defaults


def pag_traits(pipe: Any) -> dict[str, Any]:
    """What the PAG slider shows for a pipeline: whether it is a PAG one, and its own default scale (3)."""
    if pipe is None or not is_pag(pipe):
        return {"pag_available": False}
    return {"pag_available": True, "pag_scale": float(own_defaults(pipe)["pag_scale"])}


def pag_state(traj: Any) -> dict[str, Any]:
    """The shown run's PAG per step, and its scale on the slider (a run without PAG: none, the slider as it is)."""
    pag = traj.params.get("pag") if traj is not None else None
    if not pag:
        return {"pag_used": []}
    return {"pag_used": [float(s.pag_scale or 0.0) for s in traj.steps], "pag_scale": float(pag["scale"])}


def generate_pag(ex: Any, pipe_kwargs: dict | None) -> dict | None:
    """Generate's pipe_kwargs with the slider's pag_scale for a PAG pipeline (one given in pipe_kwargs wins)."""
    if not ex.pag_available or (pipe_kwargs is not None and "pag_scale" in pipe_kwargs):
        return pipe_kwargs
    return {**(pipe_kwargs or {}), "pag_scale": float(ex.pag_scale)}


def branch_pag(ex: Any, parent: Any) -> dict[str, Any]:
    """"Branch here"'s pag_scale: the slider's, where the shown run had PAG and the slider differs from its scale."""
    pag = parent.params.get("pag") if parent is not None else None
    if not pag or not ex.pag_available or float(ex.pag_scale) == float(pag["scale"]):
        return {}
    return {"pag_scale": float(ex.pag_scale)}
