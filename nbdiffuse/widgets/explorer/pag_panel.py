"""The Explorer's PAG controls (perturbed-attention guidance, core/pag.py), for any diffusers PAG pipeline (the
ones nbdiffuse's loop runs record their PAG per step; HunyuanDiT's and Sana's take the scale in their own loop).

`pag_available`: the pipeline is one (the PAG slider under Guidance shows only then); `pag_scale`: the scale the
next run uses (Generate passes it as pipe_kwargs["pag_scale"], "Branch here" as the branch's pag_scale where it
differs from what the shown run's next step asked), and moved during a run, the scale of its next steps
(RunControl.set_pag_scale, as the guidance slider; PagPanel); `pag_used`: the shown run's PAG scale per step
(empty for a run without PAG), where the what-if's PAG slider starts (explore.js: the what-if re-weighs guidance
and PAG, no model call).
"""
from __future__ import annotations

from typing import Any

import traitlets as t

from ...core.pag import MAX_PAG_SCALE, check_pag_value, is_pag, own_defaults, plan_from_params


def pag_traits(pipe: Any) -> dict[str, Any]:
    """What the PAG slider shows for a pipeline: whether it is a PAG one, and its own default scale (3)."""
    if pipe is None or not is_pag(pipe):
        return {"pag_available": False}
    return {"pag_available": True, "pag_scale": float(own_defaults(pipe)["pag_scale"])}


def pag_state(traj: Any) -> dict[str, Any]:
    """The shown run's PAG per step, and the pag_scale its last step asked on the slider (a live change included;
    a run without PAG: none, the slider as it is)."""
    pag = traj.params.get("pag") if traj is not None else None
    if not pag:
        return {"pag_used": []}
    asked = pag.get("scales") or [pag["scale"]]
    last = asked[min(len(traj), len(asked)) - 1] if len(traj) else asked[0]
    return {"pag_used": [float(s.pag_scale or 0.0) for s in traj.steps], "pag_scale": float(last)}


def generate_pag(ex: Any, pipe_kwargs: dict | None) -> dict | None:
    """Generate's pipe_kwargs with the slider's pag_scale for a PAG pipeline (one given in pipe_kwargs wins)."""
    if not ex.pag_available or (pipe_kwargs is not None and "pag_scale" in pipe_kwargs):
        return pipe_kwargs
    return {**(pipe_kwargs or {}), "pag_scale": float(ex.pag_scale)}


def branch_pag(ex: Any, parent: Any, at: int) -> dict[str, Any]:
    """"Branch here"'s pag_scale: the slider's, where the shown run had PAG and the slider differs from the
    pag_scale its next step asked (else the branch replays the steps' own, live changes included)."""
    pag = parent.params.get("pag") if parent is not None else None
    if not pag or not ex.pag_available:
        return {}
    asked = pag.get("scales") or [pag["scale"]]
    if float(ex.pag_scale) == float(asked[min(at + 1, len(asked) - 1)]):
        return {}
    return {"pag_scale": float(ex.pag_scale)}


def continue_pag(parent: Any, k: int, pag: float | None) -> dict[str, Any]:
    """Continue's pag_scale for a what-if's PAG at step k (the PAG that step used, as its slider shows it): the
    pag_scale that gives it at step k (an adaptive scale lowers what a step asks: the branch asks that much more,
    so its PAG goes on from what the what-if showed and then falls as the run's did)."""
    if pag is None:
        return {}
    pag = check_pag_value("pag_scale", pag, MAX_PAG_SCALE)
    plan = plan_from_params(parent.params) if parent is not None else None
    if plan is None or not 0 <= k < len(parent):
        return {"pag_scale": pag}  # branch_pag names what is wrong with it
    asked = plan.asked_for(pag, parent[k].timestep)
    if asked > MAX_PAG_SCALE:
        raise ValueError(f"pag_scale: PAG {pag:g} at step {k} needs a pag_scale of {asked:g} under this run's "
                         f"pag_adaptive_scale {plan.adaptive_scale:g}, past the largest, {MAX_PAG_SCALE:g}; "
                         "take a lower PAG, or branch with pag_adaptive_scale=0")
    return {"pag_scale": asked}


class PagPanel(t.HasTraits):
    """The PAG slider moved during a run steers it from its next step (RunControl.set_pag_scale), as the
    guidance slider does; a pipeline that runs its own loop notes the change as ignored. Needs the
    Explorer's `_runner`, `_quiet` and `_show_error`."""

    @t.observe("pag_scale")
    def _pag_scale_changed(self, change: dict) -> None:
        if self._quiet or not self.pag_available:
            return
        job = self._runner.current
        if job is not None and not job.done.is_set():
            try:
                job.control.set_pag_scale(change["new"])
            except (TypeError, ValueError) as exc:
                self._show_error(exc)
