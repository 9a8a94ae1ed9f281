"""nbd.SweepView: a sweep's grid under one shared step scrubber, its axes' labels, cells that open
in the Explorer, an adherence heat strip per cell (the embedded model), PNG and .nbd exports.

Every step's frames of every cell (x0 and x_t) go into widget state as the cells finish, so the
scrubber moves the whole grid without a kernel round trip, also in a saved notebook. Pictures
are the runs' saved frames (runs sent by workers) or decoded here with the pipeline's tiny or
full decoder (widgets/frames.py picks). A sweep started with nbd.sweep(..., wait=False) fills in
live.
"""
from __future__ import annotations

import io
import os
import pathlib
import threading
from typing import Any

import anywidget
import ipywidgets
import traitlets as tl
from PIL import Image

from ..core.sweep import Sweep
from ..core.sweep_files import grid_layout
from .assets import module, stylesheet
from .frames import frame_decoder, steps_frames

_HERE = pathlib.Path(__file__).resolve().parent
EMBEDDED = "nbdiffuse/shapes"
HEAT_NOTE = ("strip under each cell: adherence per step, the share of the prompt's attributes that step's x0 shows "
             "(red 0%, green 100%)")


class SweepGrid(anywidget.AnyWidget):
    """The grid itself (the browser side of SweepView)."""

    _esm = module(_HERE / "sweep_view.js")
    _css = stylesheet(_HERE / "sweep_view.css")
    title = tl.Unicode("").tag(sync=True)
    rows = tl.List(tl.Unicode()).tag(sync=True)  # row labels (every axis but the last), top to bottom
    columns = tl.List(tl.Unicode()).tag(sync=True)  # the last axis's labels, left to right
    cells = tl.List(tl.Dict()).tag(sync=True)  # row-major: label, status, error, steps, x0, xt, heat, seconds
    view = tl.Unicode("x0").tag(sync=True)  # "x0" or "xt": what every cell shows
    step = tl.Int(-1).tag(sync=True)  # the shared scrubber: one step index for every cell (-1: the last)
    max_steps = tl.Int(0).tag(sync=True)
    selected = tl.Int(-1).tag(sync=True)  # the cell open in the Explorer below
    done = tl.Int(0).tag(sync=True)
    total = tl.Int(0).tag(sync=True)
    heat_note = tl.Unicode("").tag(sync=True)  # what the heat strip shows, or why there is none
    message = tl.Unicode("").tag(sync=True)  # where the last export went, or what failed


class SweepView(ipywidgets.VBox):
    """`nbd.SweepView(sweep, pipe=None)`: the grid of a Sweep (nbd.sweep or nbd.Sweep.load).

    pipe: the model that opened cells use in the Explorer (default the sweep's own, when it ran in
    this process; without one the Explorer opens in workshop mode: scrub, what-if, compare).
    `open_cell(i)` opens cell i (flat, row-major) and returns its Explorer; `to_png(path)` and
    `save(folder)` export the grid and the whole sweep.
    """

    def __init__(self, sweep: Sweep, pipe: Any = None, export_dir: Any = None):
        if not isinstance(sweep, Sweep):
            raise TypeError(f"sweep must be an nbd.Sweep (from nbd.sweep or nbd.Sweep.load), got {type(sweep).__name__}")
        self.sweep = sweep
        self.pipe = pipe if pipe is not None else sweep.pipe
        self.export_dir = pathlib.Path(export_dir if export_dir is not None else os.getcwd())
        self.explorer: Any = None
        self._lock = threading.Lock()
        rows, columns = grid_layout(sweep)
        shapes = _is_shapes(sweep, self.pipe)
        self.grid = SweepGrid(title=_title(sweep), rows=rows, columns=columns, total=sweep.total,
                              cells=[_waiting(c) for c in sweep.cells],
                              heat_note=HEAT_NOTE if shapes else "")
        self._shapes = shapes
        self._box = ipywidgets.Box()
        super().__init__(children=[self.grid, self._box])
        self.grid.on_msg(self._on_msg)
        sweep.on_cell(lambda _sweep, cell: self._show(cell))
        for cell in sweep.cells:
            if cell.done:
                self._show(cell)

    # --- public -------------------------------------------------------------------------
    def open_cell(self, i: int) -> Any:
        """Open cell `i` (flat, row-major) in an Explorer under the grid; returns the Explorer."""
        from .explorer import Explorer

        cell = self.sweep[i]
        if cell.run is None or len(cell.run) == 0:
            raise ValueError(f"cell {i} has no run to open ({cell.error or 'not finished yet'})")
        if self.explorer is not None:
            self.explorer.close()
        self.explorer = Explorer.from_files([cell.run], pipe=self.pipe)
        self._box.children = [self.explorer]
        self.grid.selected = i
        return self.explorer

    def to_png(self, path: Any = None, k: int | None = None, view: str | None = None, cell_size: int = 128) -> pathlib.Path:
        """The grid at the scrubber's step (or step `k`) as a labelled PNG; returns its path."""
        path = pathlib.Path(path) if path is not None else self.export_dir / "sweep.png"
        k = self.grid.step if k is None else k
        self.sweep.to_png(path, k=k, view=view or self.grid.view, cell_size=cell_size)
        return path

    def save(self, folder: Any = None) -> pathlib.Path:
        """Every run as a .nbd file plus index.json (nbd.Sweep.load reads it back); returns the index's path."""
        return self.sweep.save(folder if folder is not None else self.export_dir / "sweep")

    # --- the work -----------------------------------------------------------------------
    def _show(self, cell: Any) -> None:
        i = self.sweep.cells.index(cell)
        entry = _cell_state(cell, self._shapes)
        with self._lock:
            cells = list(self.grid.cells)
            cells[i] = entry
            self.grid.cells = cells
            self.grid.done = self.sweep.done
            self.grid.max_steps = max(self.grid.max_steps, entry["steps"])

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        try:
            kind = content.get("type")
            if kind == "open":
                self.open_cell(int(content["i"]))
            elif kind == "png":
                self.grid.message = f"saved {self.to_png()}"
            elif kind == "save":
                self.grid.message = f"saved {self.save()}"
        except Exception as exc:  # shown in the widget, never raised in the comm handler
            self.grid.message = f"{type(exc).__name__}: {exc}"


def _title(sweep: Sweep) -> str:
    axes = " × ".join(f"{a.name} ({len(a.labels)})" for a in sweep.axes)
    prompt = sweep.fixed.get("prompt")
    return f"Sweep: {axes}" + (f" · “{prompt}”" if isinstance(prompt, str) else "")


def _waiting(cell: Any) -> dict:
    label = ", ".join(f"{k} {v}" for k, v in cell.labels.items())
    return {"label": label, "status": "waiting", "error": "", "steps": 0, "x0": [], "xt": [], "heat": [], "seconds": 0.0}


def _cell_state(cell: Any, shapes: bool) -> dict:
    state = _waiting(cell)
    state["status"] = "failed" if cell.error else "done"
    state["error"] = cell.error or ""
    state["seconds"] = round(cell.seconds or 0.0, 3)
    traj = cell.run
    if traj is None or len(traj) == 0:
        return state
    decoder = frame_decoder(traj)
    views = [v for v in ("x0", "xt") if v == "xt" or traj.has_x0]
    frames = steps_frames(traj, range(len(traj)), views, decoder)
    state["steps"] = len(traj)
    for j, view in enumerate(views):
        state[view] = [f[j] for f in frames]
    if shapes and "x0" in views:
        state["heat"] = _adherence(state["x0"], traj.params.get("prompt", ""))
    return state


def _adherence(frames: list[bytes], prompt: str) -> list[float]:
    """Per step, the share of the prompt's named attributes the step's x0 picture shows (shapes evaluator)."""
    from ..shapes import score

    out = []
    for data in frames:
        result = score(Image.open(io.BytesIO(data)).convert("RGB"), prompt) if data else {}
        out.append(round(sum(result.values()) / len(result), 3) if result else 0.0)
    return out


def _is_shapes(sweep: Sweep, pipe: Any) -> bool:
    from ..core.pipe_attrs import speaks_shapes

    if pipe is not None:
        return speaks_shapes(pipe)
    runs = [c.run for c in sweep.cells if c.run is not None]
    if not runs:  # nothing back yet: workers load the embedded model when the source is None
        return sweep.source is None
    return all(r.params.get("model") == EMBEDDED for r in runs)
