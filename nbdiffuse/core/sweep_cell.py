"""One sweep cell, run wherever an executor runs it: in this process, or in a worker of a cluster.

A worker never receives a pipeline (pipelines are never pickled): it gets the model's `source`
(None for the embedded model, a folder or a hub id its machine can read) and loads it itself,
once per process (`_MODELS`), then answers each cell with the run as `.nbd` file bytes.
"""
from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .pag import KEYWORDS as PAG_KEYWORDS

_MODELS: dict[tuple, Any] = {}
_LOAD_LOCK = threading.Lock()


def model_for(source: Any, load: dict) -> tuple[Any, float | None]:
    """(pipeline, seconds its load took here, or None when this process had it already)."""
    key = (source, tuple(sorted((k, str(v)) for k, v in load.items())))
    with _LOAD_LOCK:
        if key in _MODELS:
            return _MODELS[key], None
        from .loading import load_pipeline

        began = time.perf_counter()
        pipe = load_pipeline(source, **load)
        _MODELS[key] = pipe
        return pipe, time.perf_counter() - began


def prepare_call(pipe: Any, call: dict) -> Any:
    """The prepared Run of one cell's call (trace's checks, before any model work), its walk attached."""
    from .trace import prepare
    from .walks import Walk, attach_walk

    call = dict(call)
    walk = call.pop("walk", None)
    call.pop("lora_scale", None)
    pag = {key: call.pop(key) for key in PAG_KEYWORDS if key in call}  # a PAG pipeline's own keywords
    if pag:
        call["pipe_kwargs"] = {**(call.get("pipe_kwargs") or {}), **pag}
    run = prepare(pipe, **call)
    if walk is not None:
        attach_walk(run, Walk(seeds=walk.get("seeds"), prompts=walk.get("prompts")))
    return run


def run_prepared(pipe: Any, run: Any, call: dict) -> Any:
    """Run a prepared cell: set its LoRA scale first (when the cell has one), then execute."""
    if call.get("lora_scale") is not None:
        from .lora import set_lora_scale

        set_lora_scale(pipe, call["lora_scale"], timeout=60.0)
    return run.execute()


def run_cell(pipe: Any, call: dict) -> Any:
    """The Trajectory of one cell on `pipe` (raises as trace does; a failed run's steps ride on the error)."""
    return run_prepared(pipe, prepare_call(pipe, call), call)


def cell_file(source: Any, load: dict, call: dict, frames: bool = True) -> dict:
    """Run one cell in this process and answer with plain data (what an executor sends back):
    {"file": .nbd bytes or None, "error": "Type: message" or None, "load_seconds", "seconds",
    "cpu_seconds" (this process's CPU time for the cell), "worker"}.
    A failed run still sends the steps it made. Never raises for a cell's own failure."""
    began, cpu = time.perf_counter(), time.process_time()
    answer: dict = {"file": None, "error": None, "load_seconds": None, "worker": f"{platform.node()}:{os.getpid()}"}
    try:
        pipe, answer["load_seconds"] = model_for(source, load)
        traj = run_cell(pipe, call)
    except Exception as exc:  # the cell says why; the sweep goes on
        answer["error"] = f"{type(exc).__name__}: {exc}"
        traj = getattr(exc, "trajectory", None)
    if traj is not None:
        answer["file"] = trajectory_bytes(traj, frames)
    answer["seconds"] = time.perf_counter() - began
    answer["cpu_seconds"] = time.process_time() - cpu
    return answer


def trajectory_bytes(traj: Any, frames: bool) -> bytes:
    with tempfile.TemporaryDirectory(prefix="nbd-cell-") as folder:
        path = Path(folder) / "cell.nbd"
        traj.save(path, frames=frames)
        return path.read_bytes()


def trajectory_from_bytes(data: bytes) -> Any:
    from .trajectory import Trajectory

    with tempfile.TemporaryDirectory(prefix="nbd-cell-") as folder:
        path = Path(folder) / "cell.nbd"
        path.write_bytes(data)
        return Trajectory.load(path)
