"""nbd.sweep(): runs on a grid of any axes (core/sweep_plan.py), in this process or on any
concurrent.futures.Executor (a Dask cluster's Client.get_executor(), a process pool), kept as a Sweep.

In this process (executor=None) one model serves every cell, one run after another, and the
Sweep's runs are the very Trajectories trace returns. With an executor each cell is a task
(core/sweep_cell.cell_file): the worker loads the model itself, once, from `source`, and sends the
run back as `.nbd` file bytes; pipelines never travel. Results are kept in the grid's order
whatever order they finish in; a failed cell keeps its error (and the steps it made) and the
others go on.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .model_source import local_folder
from .pag import is_pag
from .pipe_attrs import lora_info
from .pipe_attrs import source as loaded_from
from .sweep_cell import cell_file, model_for, prepare_call, run_prepared, trajectory_from_bytes
from .sweep_plan import LOAD_KEYS, Axis, Cell, cell_calls, plan_axes
from .validate import check_callable

EMBEDDED = "nbdiffuse/shapes"  # what load_pipeline() records as the embedded model's source


@dataclass
class Sweep:
    """The runs of a sweep, in row-major order of its axes (the last axis fastest)."""

    axes: list[Axis]
    cells: list[Cell]
    fixed: dict = field(default_factory=dict)
    source: str | None = None  # the model's source as the workers had it (None: the embedded model)
    pipe: Any = field(default=None, repr=False)  # the pipeline that ran the cells here (None: on workers / loaded)
    _listeners: list = field(default_factory=list, repr=False)
    _thread: Any = field(default=None, repr=False)

    def on_cell(self, listener: Callable[["Sweep", Cell], None]) -> None:
        """Call listener(sweep, cell) as each cell finishes (in the thread that runs the sweep)."""
        check_callable("listener", listener)
        self._listeners.append(listener)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every cell finished (a sweep started with wait=False); False if `timeout` ran out first."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _finished(self, cell: Cell, report: Callable) -> None:
        report(self.done, self.total, cell)
        for listener in list(self._listeners):
            listener(self, cell)

    @property
    def runs(self) -> list[Any]:
        """Every cell's Trajectory in row-major order (None for a cell that failed before its first step)."""
        return [c.run for c in self.cells]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.labels) for a in self.axes)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.axes]

    @property
    def total(self) -> int:
        return len(self.cells)

    @property
    def done(self) -> int:
        return sum(c.done for c in self.cells)

    @property
    def errors(self) -> dict[tuple[int, ...], str]:
        return {c.index: c.error for c in self.cells if c.error is not None}

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, index: Any) -> Cell:
        """sweep[i] (flat, row-major) or sweep[i, j, ...] (one index per axis)."""
        if isinstance(index, tuple):
            if len(index) != len(self.axes):
                raise IndexError(f"index {index!r} needs {len(self.axes)} entries, one per axis {self.names}")
            flat = 0
            for i, n in zip(index, self.shape):
                if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                    raise IndexError(f"index {index!r} is outside the grid {self.shape}")
                flat = flat * n + i % n
            return self.cells[flat]
        return self.cells[index]

    def save(self, folder: Any, frames: bool = True) -> Any:
        """Write every run as a `.nbd` file into `folder`, with `index.json` (axes, cells, errors);
        Sweep.load(folder) reads it back. Returns the index's path."""
        from .sweep_files import save_sweep

        return save_sweep(self, folder, frames)

    @classmethod
    def load(cls, folder: Any, pipe: Any = None) -> "Sweep":
        """The sweep a folder written by Sweep.save holds (its runs attached to `pipe`, when given)."""
        from .sweep_files import load_sweep

        return load_sweep(cls, folder, pipe)

    def grid_image(self, k: int = -1, view: str = "x0", decoder: str = "auto", cell_size: int = 128) -> Any:
        """The grid at step `k` as one PIL picture with the axes' labels (core/sweep_files.py)."""
        from .sweep_files import grid_image

        return grid_image(self, k, view, decoder, cell_size)

    def to_png(self, path: Any, k: int = -1, view: str = "x0", decoder: str = "auto", cell_size: int = 128) -> None:
        """Save the labelled grid at step `k` as a PNG."""
        self.grid_image(k, view, decoder, cell_size).save(os.fspath(path), format="PNG")

    def __repr__(self) -> str:
        axes = " × ".join(f"{a.name}[{len(a.labels)}]" for a in self.axes)
        failed = f", {len(self.errors)} failed" if self.errors else ""
        return f"<Sweep {axes}: {self.done}/{self.total} cells done{failed}>"


def sweep(source: Any = None, prompt: str | None = None, axes: dict | None = None, executor: Any = None,
          frames: bool = True, progress: Any = True, wait: bool = True, **fixed: Any) -> Sweep:
    """Run `prompt` on every cell of `axes` and return the Sweep (runs in row-major order, last axis fastest).

    source: None (the embedded model), a folder or hub id (each worker loads it, once, and keeps it
    for later cells and sweeps; so does this process), or, in this process, a loaded pipeline.
    axes: {name: values}; names are trace's keywords (guidance, steps,
    scheduler, seed, negative_prompt, height, width, strength, ...), lora_scale, a PAG pipeline's pag_scale and
    pag_adaptive_scale, prompt (a list),
    prompt_sr ([search, replacement, ...]), seed_walk=(a, b, n) and prompt_walk=(p, q, n).
    executor: None runs here; any concurrent.futures.Executor (Dask: Client.get_executor()) runs
    each cell as a task. frames: workers save each step's pictures into the files they send back
    (so the grid shows the model's own pictures where the model is not loaded). progress: True
    writes "cells done/total" as cells finish, or a callable progress(done, total, cell).
    wait: False returns the Sweep at once and runs it in a background thread (sweep.wait(),
    sweep.on_cell(listener); nbd.SweepView shows it filling in); every check is made before it returns.
    fixed: trace's keywords for every cell; device, dtype, lora, controlnet (load_pipeline's: a ControlNet
    folder, hub id or "outline", or a list of them) and pag (the layers PAG perturbs) say how workers load the
    model; a ControlNet's
    control_image, control_scale, ... are trace's keywords (axes too).
    """
    if prompt is not None:
        fixed["prompt"] = prompt
    for name, value in (("frames", frames), ("wait", wait)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    report = _progress(progress)
    planned = plan_axes(axes, fixed)
    calls = cell_calls(planned, fixed)
    load = {k: fixed[k] for k in LOAD_KEYS if k in fixed}
    cells = [Cell(index, {a.name: a.labels[i] for a, i in zip(planned, index)}, call) for index, call in calls]
    if executor is None:
        result = Sweep(planned, cells, _jsonable_fixed(fixed), _label(source))
        work = _run_here(result, source, load, report)
    else:
        if not isinstance(executor, cf.Executor):
            raise TypeError(f"executor must be None (this process) or a concurrent.futures.Executor (Dask: "
                            f"Client.get_executor()), got {type(executor).__name__}")
        where = worker_source(source, load)
        result = Sweep(planned, cells, _jsonable_fixed(fixed), where)

        def work() -> None:
            _run_on(result, executor, where, load, frames, report)
    if wait:
        work()
    else:
        result._thread = threading.Thread(target=work, name="nbdiffuse-sweep", daemon=True)
        result._thread.start()
    return result


def worker_source(source: Any, load: dict) -> str | None:
    """What a worker loads: None (the embedded model), an absolute folder path or a hub id."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        path = local_folder(source)
        return str(path.resolve()) if path is not None else str(source)
    where = loaded_from(source)
    if where is None:
        raise TypeError(f"source must be None, a model folder or a hub id when cells run on an executor (pipelines "
                        f"are never sent to workers); got a {type(source).__name__} that load_pipeline did not load")
    if lora_info(source) is not None and "lora" not in load:
        raise ValueError("source has a LoRA loaded: pass lora=... (and lora_scale=...) so that workers load it too")
    if is_pag(source) and "pag" not in load:
        raise ValueError(f"source is a PAG pipeline ({type(source).__name__}): pass pag=... (its layers, "
                         f"{list(getattr(source, 'pag_applied_layers', []))}) so that workers load it too")
    return None if where == EMBEDDED else worker_source(where, load)


def _run_here(result: Sweep, source: Any, load: dict, report: Callable) -> Callable[[], None]:
    """Load (or take) the model and check every cell; the returned work runs them one after another."""
    from .loading import load_pipeline

    if source is not None and not isinstance(source, (str, os.PathLike)):
        pipe = load_pipeline(source, **load) if load else source  # a pipeline: checked, used as is
    else:
        pipe = model_for(source, load)[0]
    result.pipe = pipe
    prepared = [_prepare(pipe, cell) for cell in result.cells]  # every cell's checks before any model work

    def work() -> None:
        for cell, run in zip(result.cells, prepared):
            began, cpu = time.perf_counter(), time.process_time()
            try:
                cell.run = run_prepared(pipe, run, cell.call)
            except Exception as exc:  # the cell says why; the sweep goes on
                cell.error = f"{type(exc).__name__}: {exc}"
                cell.run = getattr(exc, "trajectory", None)
            cell.seconds, cell.cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
            result._finished(cell, report)

    return work


def _run_on(result: Sweep, executor: cf.Executor, where: str | None, load: dict, frames: bool,
            report: Callable) -> None:
    futures = {executor.submit(cell_file, where, load, cell.call, frames): cell for cell in result.cells}
    for future in cf.as_completed(futures):
        cell = futures[future]
        try:
            answer = future.result()
        except Exception as exc:  # the task itself failed (a worker died, the model could not be sent)
            cell.error = f"{type(exc).__name__}: {exc}"
        else:
            cell.error, cell.seconds, cell.cpu_seconds = answer["error"], answer["seconds"], answer.get("cpu_seconds")
            cell.load_seconds, cell.worker = answer["load_seconds"], answer["worker"]
            if answer["file"] is not None:
                cell.run = trajectory_from_bytes(answer["file"])
        result._finished(cell, report)


def _prepare(pipe: Any, cell: Cell) -> Any:
    try:
        return prepare_call(pipe, cell.call)
    except (ValueError, TypeError) as exc:
        where = ", ".join(f"{k} {v}" for k, v in cell.labels.items())
        raise type(exc)(f"sweep cell {cell.index} ({where}): {exc}") from exc


def _progress(progress: Any) -> Callable:
    if progress is True:
        def write(done: int, total: int, cell: Cell) -> None:
            end = "\n" if done == total else ""
            sys.stderr.write(f"\rsweep: {done}/{total} cells done" + end)
            sys.stderr.flush()

        return write
    if progress is False or progress is None:
        return lambda done, total, cell: None
    check_callable("progress", progress)
    return progress


def _label(source: Any) -> str | None:
    if source is None or isinstance(source, (str, os.PathLike)):
        return None if source is None else os.fspath(source)
    where = loaded_from(source)
    return None if where in (None, EMBEDDED) else where


def _jsonable_fixed(fixed: dict) -> dict:
    """The fixed keywords as the index file keeps them (a picture or a callable by its type name)."""
    plain = (str, int, float, bool, type(None))
    return {k: v if isinstance(v, plain) or (isinstance(v, list) and all(isinstance(x, plain) for x in v))
            else f"<{type(v).__name__}>" for k, v in fixed.items()}


__all__ = ["Cell", "Sweep", "sweep"]
