"""Grids of runs that differ in one setting: guidance, sampler, step count, seed, prompt.

Every sweep runs its cells one after another in a background thread (the notebook stays usable
and the grid fills in as cells finish), records each run as an nbd.Trajectory, and keeps every
step's approx-decoded x0 in widget state so that one shared scrubber, by fraction of the run,
moves all cells together, also in a saved notebook. Clicking a cell opens its run large. A
pipeline outside the known families records only x_t: its cells show the noisy latents turning
into the picture instead, and say so.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import traitlets as tl

from ...core import RunControl, compare, prepare
from ...core.families import default_guidance
from ...core.schedulers import schedulers as scheduler_names
from ...core.validate import check_guidance_value, check_prompt, check_seed, check_steps
from ..frames import frame_decoder, steps_frames
from ..runner import Runner, Task
from .common import (TeachingWidget, Throttle, default_prompt, fit_for_display, is_shapes, lossless, model_label,
                     resolve_pipe)

FINAL_DISPLAY = 256
ADHERENCE_NOTE = "adherence needs the shapes model (nbd.load_pipeline()): this pipeline's pictures cannot be scored"


@dataclass
class CellSpec:
    """One run of a sweep: what nbd.trace gets, plus its place and label in the grid."""

    label: str
    row: str
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance: float = 5.0
    scheduler: Any = None
    kept: bool = False
    extra: dict = field(default_factory=dict)

    def trace_args(self) -> dict:
        return dict(prompt=self.prompt, negative_prompt=self.negative_prompt, seed=self.seed, steps=self.steps,
                    guidance=self.guidance, scheduler=self.scheduler)


def _seq(name: str, values: Any, check, allow_empty: bool = False) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list, got {values!r} ({type(values).__name__})")
    out = [check(v) for v in values]
    if not out and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return out


class Sweep(TeachingWidget):
    """A grid of runs (the base of GuidanceSweep, SamplerCompare, StepsCompare, SeedsAndPrompts).

    `wait(timeout)` blocks until every cell ran; `trajectories` (one per cell, None until it ran),
    `stop()`, `selected` (the opened cell) and `selected_trajectory`. `run()` runs the cells again.
    """

    cells = tl.List(tl.Dict()).tag(sync=True)  # label, row, status, steps, seconds, frames, final, info, diff
    position = tl.Float(1.0).tag(sync=True)  # shared scrubber: fraction of the run, 0..1
    selected = tl.Int(-1).tag(sync=True)
    status = tl.Unicode("idle").tag(sync=True)  # idle running done stopped error
    progress = tl.Float(0.0).tag(sync=True)  # cells done + fraction of the running one, / cells
    curve = tl.Dict().tag(sync=True)  # {"x": [...], "xlabel", "ylabel", "series": [{"name", "y"}], "note"}
    error = tl.Unicode("").tag(sync=True)
    columns = tl.Int(4).tag(sync=True)
    can_tweak = tl.Bool(False).tag(sync=True)  # shows keep marks and the prompt-edit box

    def __init__(self, pipe: Any, specs: list[CellSpec], title: str, note: str = "", columns: int = 4,
                 run: bool = True):
        self.specs = list(specs)
        for spec in self.specs:  # every cell's arguments are checked before any model work
            prepare(pipe, **spec.trace_args())
        self.pipe = pipe
        self.trajectories: list[Any] = [None] * len(self.specs)
        # Model work must not run in the cell: widget events are handled only while it is idle.
        self._runner = Runner(self._execute, name=f"nbdiffuse-{type(self).__name__}")
        self._task: Task | None = None  # the latest run(): its RunControl drives every cell of it
        self._cells_lock = threading.Lock()
        super().__init__(_kind="sweep", title=title, note=note, columns=max(1, columns),
                         cells=[self._cell(i, "waiting") for i in range(len(self.specs))])
        self.on_msg(self._on_msg)
        if run:
            self.run()

    # --- public -------------------------------------------------------------------------
    def run(self) -> None:
        """Run every cell not run yet (in the background); returns at once."""
        self.status = "running"
        self.error = ""
        task = Task(RunControl())
        self._runner.submit(task, replace=False)  # refused while the sweep runs: stop() or wait() first
        self._task = task

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sweep is done (or stopped); False when `timeout` seconds ran out first."""
        return self._runner.wait(timeout)

    def stop(self) -> None:
        """Stop after the running cell's current step; cells not run stay empty."""
        # The task's own control, not runner.stop(): that would drop a task not started yet, which
        # then never says "stopped"; stopped here, it starts, runs no cell and says so.
        task = getattr(self, "_task", None)  # None when __init__ failed (close() runs from __del__)
        if task is not None:
            task.control.stop()

    @property
    def running(self) -> bool:
        return self._runner.busy

    @property
    def selected_trajectory(self) -> Any:
        return self.trajectories[self.selected] if 0 <= self.selected < len(self.trajectories) else None

    def final_images(self) -> list:
        """Each cell's result (full VAE), None where it has not run."""
        return [None if tr is None or not len(tr) else tr.image(-1, tr.default_view, decoder="full")
                for tr in self.trajectories]

    def close(self) -> None:
        self.stop()
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.close(30)  # waits for the running cell to stop, and ends the worker thread
        super().close()

    # --- the work -----------------------------------------------------------------------
    def _cell(self, i: int, status: str, traj: Any = None, seconds: float = 0.0) -> dict:
        spec = self.specs[i]
        cell = {"label": spec.label, "row": spec.row, "status": status, "steps": spec.steps, "seconds": seconds,
                "frames": [], "final": b"", "info": "", "diff": b"", "kept": spec.kept,
                "prompt": spec.prompt, "seed": spec.seed, "view": "x0", "decoder": ""}
        if traj is not None and len(traj):
            # x_t for a pipeline that gives no x0: its last x_t is the finished latent all the same
            view = cell["view"] = traj.default_view
            decoder = cell["decoder"] = frame_decoder(traj)  # the browser marks approximate frames
            cell["frames"] = [f[0] for f in steps_frames(traj, range(len(traj)), (view,), decoder)]
            cell["final"] = lossless(fit_for_display(traj.image(-1, view, decoder="full"), FINAL_DISPLAY))
        return cell

    def _set_cell(self, i: int, cell: dict) -> None:
        with self._cells_lock:
            cells = list(self.cells)
            while len(cells) < len(self.specs):
                cells.append(self._cell(len(cells), "waiting"))
            cells[i] = cell
            self.cells = cells

    def _execute(self, task: Task) -> None:
        """The Runner's side: errors are shown in the widget, never raised in the worker thread."""
        try:
            self._work(task.control)
        except BaseException as exc:  # shown in the widget; wait() returns normally
            self._failed(exc, traceback.format_exc())

    def _work(self, control: RunControl) -> None:
        todo = [i for i, tr in enumerate(self.trajectories) if tr is None or len(tr) < tr.total_steps]
        throttle = Throttle(0.15)
        n = len(self.specs)
        for i in todo:
            if control.stopped:
                break
            spec = self.specs[i]
            done_before = sum(1 for tr in self.trajectories if tr is not None) - (self.trajectories[i] is not None)

            def on_step(traj, step, i=i, done_before=done_before):
                if throttle.ready():
                    self.progress = (done_before + len(traj) / spec.steps) / n

            self._set_cell(i, dict(self._cell(i, "running")))
            began = time.perf_counter()
            run = prepare(self.pipe, control=control, on_step=on_step, **spec.trace_args())
            traj = run.execute()
            seconds = time.perf_counter() - began
            self.trajectories[i] = traj
            self._set_cell(i, self._cell(i, "stopped" if traj.stopped else "done", traj, seconds))
            self.progress = sum(1 for tr in self.trajectories if tr is not None) / n
        if all(tr is not None and not tr.stopped for tr in self.trajectories):
            self._finish()
            self.status = "done"
        else:
            self.status = "stopped"

    def _failed(self, exc: BaseException, details: str) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.status = "error"

    def _finish(self) -> None:
        """After the last cell: measure what the sweep is about (subclasses)."""

    def _annotate(self, i: int, info: str = "", diff: bytes = b"") -> None:
        with self._cells_lock:
            cells = list(self.cells)
            cells[i] = dict(cells[i], info=info, diff=diff)
            self.cells = cells

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "stop":
            self.stop()

    def __repr__(self) -> str:
        done = sum(1 for tr in self.trajectories if tr is not None)
        return f"{type(self).__name__}(cells={len(self.specs)}, done={done}, status={self.status!r})"


def _variety(pictures: list) -> float:
    """Mean pixel difference between every pair of results in [0, 1]: how different the seeds came out."""
    arrays = [np.asarray(p, np.float32) / 255 for p in pictures]
    pairs = [(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:]]
    return float(np.mean([np.abs(a - b).mean() for a, b in pairs])) if pairs else 0.0


def _clipped(picture) -> float:
    """Share of colour values at 0 or 255: over-saturation, what very high guidance does to a picture."""
    array = np.asarray(picture)
    return float(((array <= 2) | (array >= 253)).mean())


class GuidanceSweep(Sweep):
    """`nbd.GuidanceSweep(pipe=None, prompt=None, guidances=(1, 3, 5, 10, 20), seeds=(0, 1), steps=20)`.

    One column per guidance value, one row per seed. The default values span the three regimes the
    embedded model shows: unguided (1) misses, guided (3-10) hits, far too much (20) degrades. At
    the end: for a shapes-world model the evaluator's adherence per guidance ("adherence": the share
    of the prompt's attributes a result shows, averaged; "all right": the share of results with
    every attribute right) and the share of pixels off the palette ("off palette",
    nbd.shapes.off_palette: colours pushed past the palette, artefacts); for any model the variety
    across seeds and the share of clipped (over-saturated) colour values. `measures` holds the
    numbers: {guidance: {"adherence", "all right", "off palette", "variety", "clipped"}}.
    """

    def __init__(self, pipe: Any = None, prompt: str | None = None, guidances: Sequence[float] = (1, 3, 5, 10, 20),
                 seeds: Sequence[int] = (0, 1), steps: int = 20, scheduler: Any = None, negative_prompt: str = "",
                 run: bool = True):
        pipe = resolve_pipe(pipe)
        prompt = default_prompt(pipe) if prompt is None else check_prompt(prompt)
        guidances = _seq("guidances", guidances, check_guidance_value)
        seeds = _seq("seeds", seeds, check_seed)
        steps = check_steps(steps)
        self.guidances, self.seeds, self.prompt = guidances, seeds, prompt
        self.measures: dict[float, dict[str, float]] = {}
        specs = [CellSpec(f"guidance {w:g}", f"seed {s}", prompt, negative_prompt, s, steps, w, scheduler)
                 for s in seeds for w in guidances]
        shapes = is_shapes(pipe)
        note = (f"“{prompt}” on {model_label(pipe)}: guidance pulls the picture toward the prompt"
                + ("" if shapes else f". Note: {ADHERENCE_NOTE}."))
        super().__init__(pipe, specs, "Guidance sweep", note, columns=len(guidances), run=run)

    def _finish(self) -> None:
        finals = self.final_images()
        n = len(self.guidances)
        shapes = is_shapes(self.pipe)
        series: dict[str, list[float]] = {"variety": [], "clipped": []}
        if shapes:
            from ...shapes import adherence, off_palette

            # The mean over the prompt's attributes moves smoothly with guidance; "all right" (the
            # evaluator's joint score) is the strict one, near 0 for a small model and few seeds.
            series = {"adherence": [], "all right": [], "off palette": [], **series}
        for j, w in enumerate(self.guidances):
            column = [finals[r * n + j] for r in range(len(self.seeds))]
            entry = {"variety": _variety(column), "clipped": float(np.mean([_clipped(p) for p in column]))}
            if shapes:
                scores = adherence(column, self.prompt)
                attributes = [v for k, v in scores.items() if k != "joint"]
                entry["adherence"] = float(np.mean(attributes)) if attributes else 0.0
                entry["all right"] = float(scores["joint"])
                entry["off palette"] = float(np.mean([off_palette(p) for p in column]))
            self.measures[w] = entry
            for key in series:
                series[key].append(entry[key])
        self.curve = {"x": list(self.guidances), "xlabel": "guidance", "ylabel": "share (0..1)",
                      "series": [{"name": k, "y": v} for k, v in series.items()],
                      "note": "" if shapes else ADHERENCE_NOTE}


class SamplerCompare(Sweep):
    """`nbd.SamplerCompare(pipe=None, prompt=None, schedulers=("euler", "dpmpp_2m", "ddim", "euler_a"), steps=20)`.

    One seed through several samplers; the shared scrubber aligns them by fraction of the run.
    At the end each result's difference from the first sampler's (mean |RGB difference| and a
    heat map) is shown; `differences` holds the numbers.
    """

    def __init__(self, pipe: Any = None, prompt: str | None = None,
                 schedulers: Sequence[str] = ("euler", "dpmpp_2m", "ddim", "euler_a"), steps: int = 20,
                 seed: int = 0, guidance: float | None = None, negative_prompt: str = "", run: bool = True):
        pipe = resolve_pipe(pipe)
        prompt = default_prompt(pipe) if prompt is None else check_prompt(prompt)
        options = scheduler_names(pipe)

        def check_name(name):
            if name not in options:
                raise ValueError(f"schedulers entries must be among {', '.join(options)}; got {name!r}")
            return name

        names = _seq("schedulers", schedulers, check_name)
        guidance = default_guidance(pipe) if guidance is None else check_guidance_value(guidance)
        self.names = names
        self.differences: dict[str, float] = {}
        specs = [CellSpec(n, "samplers", prompt, negative_prompt, check_seed(seed), check_steps(steps), guidance, n)
                 for n in names]
        super().__init__(pipe, specs, "Samplers side by side",
                         f"“{prompt}”, seed {seed}, {steps} steps: same model, same start noise, different samplers",
                         columns=min(len(names), 4), run=run)

    def _finish(self) -> None:
        first = self.trajectories[0]
        for i, traj in enumerate(self.trajectories):
            if i == 0:
                self._annotate(0, "reference")
                continue
            comparison = compare(first, traj)
            self.differences[self.names[i]] = comparison.difference[-1]
            self._annotate(i, f"Δ vs {self.names[0]}: {comparison.difference[-1]:.3f}",
                           lossless(comparison.heatmap(-1, size=64)))


class StepsCompare(Sweep):
    """`nbd.StepsCompare(pipe=None, prompt=None, steps=(5, 10, 20, 50), seed=0)`: one prompt and seed
    at several step counts, with the time each run took (`seconds`) and how far each result is
    from the longest run's (`differences`): more steps cost time linearly, the picture soon stops changing."""

    def __init__(self, pipe: Any = None, prompt: str | None = None, steps: Sequence[int] = (5, 10, 20, 50),
                 seed: int = 0, scheduler: Any = None, guidance: float | None = None, negative_prompt: str = "",
                 run: bool = True):
        pipe = resolve_pipe(pipe)
        prompt = default_prompt(pipe) if prompt is None else check_prompt(prompt)
        counts = _seq("steps", steps, check_steps)
        guidance = default_guidance(pipe) if guidance is None else check_guidance_value(guidance)
        self.counts = counts
        self.seconds: dict[int, float] = {}
        self.differences: dict[int, float] = {}
        specs = [CellSpec(f"{n} steps", "steps", prompt, negative_prompt, check_seed(seed), n, guidance, scheduler)
                 for n in counts]
        super().__init__(pipe, specs, "How many steps?",
                         f"“{prompt}”, seed {seed}: time grows with the steps, the picture soon stops changing",
                         columns=min(len(counts), 4), run=run)

    def _finish(self) -> None:
        longest = max(range(len(self.counts)), key=lambda i: self.counts[i])
        reference = self.trajectories[longest]
        for i, traj in enumerate(self.trajectories):
            seconds = float(self.cells[i]["seconds"])
            self.seconds[self.counts[i]] = seconds
            diff = compare(reference, traj).difference[-1] if i != longest else 0.0
            self.differences[self.counts[i]] = diff
            self._annotate(i, f"{seconds:.2f} s" + ("" if i == longest else f" · Δ vs {self.counts[longest]}: {diff:.3f}"))
        self.curve = {"x": list(self.counts), "xlabel": "steps", "ylabel": "seconds / difference",
                      "series": [{"name": "seconds", "y": [self.seconds[n] for n in self.counts]},
                                 {"name": f"Δ vs {self.counts[longest]} steps",
                                  "y": [self.differences[n] for n in self.counts]}], "note": ""}


class SeedsAndPrompts(Sweep):
    """`nbd.SeedsAndPrompts(pipe=None, prompt=None, seeds=(0, 1, 2, 3), prompts=(), negative_prompt="")`.

    Row 1: one prompt across seeds. Row 2 (with `prompts`): small edits of the prompt at the first
    seed. Row 3 (with `negative_prompt`): row 1 again with the negative prompt. `tweak(prompt)` adds
    a cell with the first seed and drops earlier tweaks except the ones marked with `keep(i)`, so a
    result you liked stays while you try edits.
    """

    can_tweak = tl.Bool(True).tag(sync=True)

    def __init__(self, pipe: Any = None, prompt: str | None = None, seeds: Sequence[int] = (0, 1, 2, 3),
                 prompts: Sequence[str] = (), negative_prompt: str = "", steps: int = 20,
                 guidance: float | None = None, scheduler: Any = None, run: bool = True):
        pipe = resolve_pipe(pipe)
        prompt = default_prompt(pipe) if prompt is None else check_prompt(prompt)
        seeds = _seq("seeds", seeds, check_seed)
        edits = _seq("prompts", prompts, check_prompt, allow_empty=True)
        negative_prompt = check_prompt(negative_prompt, "negative_prompt")
        steps = check_steps(steps)
        guidance = default_guidance(pipe) if guidance is None else check_guidance_value(guidance)
        self._base = dict(steps=steps, guidance=guidance, scheduler=scheduler, seed=seeds[0])
        specs = [CellSpec(f"seed {s}", "one prompt, many seeds", prompt, "", s, steps, guidance, scheduler)
                 for s in seeds]
        specs += [CellSpec(p, f"seed {seeds[0]}, prompt edits", p, "", seeds[0], steps, guidance, scheduler)
                  for p in edits]
        if negative_prompt:
            specs += [CellSpec(f"seed {s}", f"negative: “{negative_prompt}”", prompt, negative_prompt, s, steps,
                               guidance, scheduler) for s in seeds]
        super().__init__(pipe, specs, "Seeds and prompts",
                         f"“{prompt}”: the seed picks the start noise, the prompt steers where it goes",
                         columns=max(len(seeds), 1), run=run)

    def keep(self, i: int, keep: bool = True) -> None:
        """Mark cell i to stay when tweak() replaces the earlier tweaks."""
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.specs):
            raise ValueError(f"i must be a cell index in 0..{len(self.specs) - 1}, got {i!r}")
        self.specs[i].kept = bool(keep)
        with self._cells_lock:
            cells = list(self.cells)
            cells[i] = dict(cells[i], kept=bool(keep))
            self.cells = cells

    def tweak(self, prompt: str, seed: int | None = None) -> None:
        """Run `prompt` at the first seed (or `seed`) as a new cell; earlier tweaks not kept are dropped."""
        prompt = check_prompt(prompt)
        seed = self._base["seed"] if seed is None else check_seed(seed)
        spec = CellSpec(prompt, "tweaks", prompt, "", seed, self._base["steps"], self._base["guidance"],
                        self._base["scheduler"])
        prepare(self.pipe, **spec.trace_args())
        self.wait()
        keep = [i for i, s in enumerate(self.specs) if s.row != "tweaks" or s.kept]
        with self._cells_lock:
            cells = [self.cells[i] for i in keep]
            self.specs = [self.specs[i] for i in keep] + [spec]
            self.trajectories = [self.trajectories[i] for i in keep] + [None]
            self.cells = cells + [self._cell(len(self.specs) - 1, "waiting")]
        self.run()

    def _on_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        super()._on_msg(widget, content, buffers)
        if not isinstance(content, dict):
            return
        try:
            if content.get("type") == "tweak" and isinstance(content.get("prompt"), str) and content["prompt"].strip():
                if self.running:  # never block the kernel's message loop waiting for a run
                    raise RuntimeError("the sweep is still running; try the edit when it is done")
                self.tweak(content["prompt"])
            elif content.get("type") == "keep":
                self.keep(int(content.get("i", -1)), bool(content.get("keep", True)))
        except (ValueError, TypeError, RuntimeError) as exc:
            self.error = str(exc)
