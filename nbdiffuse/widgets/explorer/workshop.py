"""Workshop mode: an Explorer over saved runs (.nbd files), with or without the model that made them.

Without a model, Generate and Branch are off (the browser says why: `has_pipe`, `workshop_note`);
scrubbing, what-if guidance (from the stored noise predictions), compare and exports work.
"""
from __future__ import annotations

import os
from typing import Any

from ...core import Trajectory, load_pipeline
from ...core.nbd_schema import check_lineage

WORKSHOP_NOTE = ("Workshop mode: saved runs, no model loaded. Generate and Branch are off; scrubbing, what-if "
                 "guidance, compare and exports work. Pass pipe=... to Explorer.from_files to generate.")


def load_runs(paths: Any, pipe: Any = None) -> tuple[Any, list]:
    """(the loaded pipeline or None, the runs): `paths` a path or a list of paths and Trajectory objects."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("paths must name at least one saved trajectory (.nbd file), got none")
    if pipe is not None:
        pipe = load_pipeline(pipe)
    runs = []
    for path in paths:
        if isinstance(path, Trajectory):
            runs.append(path.attach(pipe) if pipe is not None else path)
            continue
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"paths must hold file paths (or Trajectory objects), got {path!r}")
        runs.append(Trajectory.load(path, pipe=pipe))
    check_lineage(runs)  # core/nbd_schema.py: unique ids, no run its own ancestor
    return pipe, runs


def workshop_state(pipe: Any) -> dict[str, Any]:
    """The traits saying whether the Explorer has a model, and if not, what works without one."""
    return {"has_pipe": pipe is not None, "workshop_note": "" if pipe is not None else WORKSHOP_NOTE}


def need_pipe(pipe: Any, what: str) -> None:
    """Refuse `what` (generate, branch, image to image) in workshop mode without a model."""
    if pipe is None:
        raise ValueError(f"{what} needs a pipeline, and this Explorer has none (workshop mode: saved runs only). "
                         "Use nbd.Explorer.from_files(paths, pipe=...) to generate and branch")
