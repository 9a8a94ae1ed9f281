"""What the Explorer says in plain words: failures, what a pipeline cannot do, which model made a run."""
from __future__ import annotations

from typing import Any

from ..core.capabilities import pipeline_capabilities, watched_reason, xt_only_reason
from ..core.device_memory import is_out_of_memory
from ..core.pipe_decoder import has_decoder
from ..core.trajectory import Trajectory

CANNOT = "x0, what-if, branching and live guidance"
NO_PICTURES = ("Its steps have no picture form here (latents packed in a layout nbdiffuse cannot read, or no "
               "decoder), so no frames are drawn; the steps are recorded all the same.")


def capabilities_state(source: Any) -> dict[str, Any]:
    """`capabilities` and `capabilities_note` for a pipeline (None: no model) or a Trajectory."""
    if isinstance(source, Trajectory):
        caps, pipeline = source.capabilities, source.params.get("pipeline")
        # the Control row stays for any run of a ControlNet pipeline, controlled or not
        caps["control"] = caps.get("control", False) or pipeline_capabilities(source.pipe)["control"]
    else:
        caps, pipeline = pipeline_capabilities(source), type(source).__name__
        if source is not None and not has_decoder(source):
            caps["previews"] = False
    # a pipeline that runs its own loop: x0 where its sampler's prediction can be read, never the pair
    note = "" if caps["branch"] else watched_reason(pipeline) if caps["x0"] else \
        xt_only_reason(pipeline, CANNOT, hint="")
    if not caps["previews"]:
        note = (note + " " if note else "") + NO_PICTURES
    return {"capabilities": caps, "capabilities_note": note}


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
