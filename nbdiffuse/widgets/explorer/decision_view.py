"""The Explorer's decision curve on demand: at which step the shown run's attributes are decided.

The page asks ({"type": "decision_curve"}); the curve (core/decision.py) of the shown run's prompt,
seed, steps and first guidance is computed off the kernel's main thread and written to the
`decision` trait, which the page draws under the scrubber with a "colour decided here" mark.
"""
from __future__ import annotations

from typing import Any

from ...core.decision import decision_curve_of

SAMPLES = 3  # continuations per point: 6 points x 3 on 30 steps of the embedded model ~8.5 s on a CPU


def curve_state(curve: Any, run_id: str) -> dict[str, Any]:
    """The `decision` trait for `curve` of run `run_id`: steps, keep per attribute, each one's decided step."""
    return {"run": run_id, "steps": list(curve.steps), "total": int(curve.trajectory.params["steps"]),
            "keep": {name: [round(v, 4) for v in values] for name, values in curve.keep.items()},
            "decided": {name: curve.decided(name) for name in curve.keep}, "samples": curve.samples}


def show_decision_curve(ex: Any, samples: int = SAMPLES) -> None:
    """Compute the shown run's decision curve and put it in `ex.decision` (`ex.decision_status` says how far)."""
    traj = ex.shown
    if traj is None or ex.pipe is None:
        raise ValueError("a decision curve needs a run on screen and its model (workshop mode without the "
                         "pipeline cannot run the continuations)")
    ex.decision_status = "running"
    try:  # the shown run's own steps (its control, its start picture's place, its guidance as it ran)
        curve = decision_curve_of(ex.pipe, traj, samples=samples)
    except BaseException:
        ex.decision_status = ""
        raise
    with ex.hold_sync():
        ex.decision = curve_state(curve, traj.id)
        ex.decision_status = "done"
