"""What the Explorer says in plain words: failures, what a pipeline cannot do, which model made a run."""
from __future__ import annotations

from typing import Any

from ..core.device_memory import is_out_of_memory
from ..core.generic import is_generic
from ..core.trajectory import CAPABILITIES, Trajectory, xt_only_reason

CANNOT = "x0, what-if, branching and live guidance"


def capabilities_state(source: Any) -> dict[str, Any]:
    """`capabilities` and `capabilities_note` for a pipeline (None: no model) or a Trajectory."""
    if isinstance(source, Trajectory):
        caps = source.capabilities
        note = "" if caps["x0"] else xt_only_reason(source.params.get("pipeline"), CANNOT, hint="")
        return {"capabilities": caps, "capabilities_note": note}
    if source is not None and is_generic(source):
        from ..core.generic import CAPABILITIES as XT_ONLY

        return {"capabilities": {**CAPABILITIES, **XT_ONLY},
                "capabilities_note": xt_only_reason(type(source).__name__, CANNOT, hint="")}
    return {"capabilities": dict(CAPABILITIES), "capabilities_note": ""}


def describe_error(exc: BaseException, step: int | None = None, total: int | None = None) -> str:
    """A failure in plain words, with what to try."""
    where = f" at step {step + 1} of {total}" if step is not None and total and step < total else ""
    text = str(exc).strip() or type(exc).__name__
    if is_out_of_memory(exc):
        return (f"Out of memory{where}. Try a smaller size or fewer steps, or free memory used by other "
                f"notebooks; then press Generate again. ({type(exc).__name__}: {text.splitlines()[0][:200]})")
    if isinstance(exc, (ValueError, TypeError)) and step is None:
        return f"Cannot start: {text}"
    return f"The run failed{where}: {type(exc).__name__}: {text.splitlines()[0][:300]}"
