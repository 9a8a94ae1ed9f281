"""Explorer: type a prompt, press Generate and watch every denoising step form; scrub, steer, pause.

The kernel side keeps the controls' state in traits and runs generation in a worker thread
(widget events are only handled while the cell is idle). Frames travel two ways:

- live, as paced custom messages (newest frame wins, the browser acks, at most two in flight),
  so a fast GPU never pushes Jupyter past its 1000 messages/s limit;
- at the end of a run (and on pause) as widget state: one lossy frame per step and view in
  `frames_x0` / `frames_xt`, plus the full-VAE PNG of the shown step in `full_frames`. State
  is what a saved notebook keeps, so scrubbing works later without a kernel.
"""
from __future__ import annotations

import contextlib
import math
import pathlib
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anywidget
import traitlets as t

from ..core import RunControl, load_pipeline, prepare, schedulers
from ..core.families import family_for
from ..core.schedulers import scheduler_name
from ..frames import ACK_TIMEOUT, VIEWS, FrameStream, Pacer, full_frames
from .runner import Job, Runner

_HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "height", "width", "view")
VIEW_MODES = ("both", "x0", "xt")
EMBEDDED_SOURCE = "nbdiffuse/shapes"
FOREGROUND_ACK_TIMEOUT = 0.1  # s; a foreground run blocks the kernel, so acks cannot arrive: pace by time
ITS_WINDOW = 10  # steps averaged for the it/s readout


class Explorer(anywidget.AnyWidget):
    """Live denoising explorer: `nbd.Explorer(pipe=None, **defaults)`; show it as a cell's value.

    defaults: prompt, negative_prompt, seed, steps, guidance, scheduler, height, width, and
    view ("both", "x0" or "xt"). pipe None loads the embedded model (nbd.load_pipeline()).

    Generate during a run replaces it (see nbdiffuse.widgets.runner). Programmatic use:
    `ex.generate(**params)` checks its arguments at once, then runs in the background
    (`background=False` runs in the calling cell: for Colab, which shows no updates from
    threads); `ex.wait()`, `ex.stop()`, `ex.pause()`, `ex.resume()`, `ex.step()`;
    `ex.trajectory` is the latest run and `ex.history` all of them.
    """

    _esm = _HERE / "explorer.js"
    _css = _HERE / "explorer.css"

    _uid = t.Unicode("").tag(sync=True)

    # Controls: the browser writes them, generate() reads them.
    prompt = t.Unicode("").tag(sync=True)
    negative_prompt = t.Unicode("").tag(sync=True)
    seed = t.Int(0).tag(sync=True)
    steps = t.Int(30).tag(sync=True)
    guidance = t.Float(7.5).tag(sync=True)
    guidance_max = t.Float(15.0).tag(sync=True)
    scheduler = t.Unicode("euler").tag(sync=True)
    scheduler_options = t.List(t.Unicode()).tag(sync=True)
    height = t.Int(0).tag(sync=True)
    width = t.Int(0).tag(sync=True)
    size_options = t.List(t.Int()).tag(sync=True)  # empty: the model takes one size only
    view = t.Unicode("both").tag(sync=True)
    frame = t.Int(-1).tag(sync=True)  # step the scrubber shows; -1 follows the newest

    # Run state: the kernel writes it at the start, pause and end of a run.
    model_label = t.Unicode("").tag(sync=True)
    run_id = t.Unicode("").tag(sync=True)
    status = t.Unicode("idle").tag(sync=True)  # idle running pausing paused done stopped error
    n_steps = t.Int(0).tag(sync=True)
    total_steps = t.Int(0).tag(sync=True)
    its = t.Float(0.0).tag(sync=True)
    seconds = t.Float(0.0).tag(sync=True)
    guidances = t.List(t.Float()).tag(sync=True)
    image_size = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)  # [width, height] of the output
    frames_x0 = t.List(t.Bytes()).tag(sync=True)
    frames_xt = t.List(t.Bytes()).tag(sync=True)
    full_frames = t.Dict().tag(sync=True)  # "k:view" -> PNG bytes (full VAE) of the shown step
    error = t.Unicode("").tag(sync=True)
    error_details = t.Unicode("").tag(sync=True)

    def __init__(self, pipe: Any = None, **defaults: Any):
        unknown = sorted(set(defaults) - set(DEFAULT_KEYS))
        if unknown:
            raise TypeError(f"Explorer() got unknown default(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULT_KEYS)}")
        view = defaults.pop("view", "both")
        if view not in VIEW_MODES:
            raise ValueError(f"view must be one of {', '.join(map(repr, VIEW_MODES))}; got {view!r}")
        self.pipe = load_pipeline(pipe)
        self.history: list = []
        self._runner = Runner(self._execute)
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdiffuse-decode")
        self._sync_lock = threading.RLock()
        self._live: _Live | None = None
        self._quiet = 0
        self._scrub_target: tuple[str, int] | None = None
        self._closed = False
        values = self._defaults(defaults)
        super().__init__(_uid=uuid.uuid4().hex, view=view, **values)
        self.on_msg(self._on_msg)

    # --- public API -------------------------------------------------------------------
    def generate(self, prompt: str | None = None, *, negative_prompt: str | None = None, seed: int | None = None,
                 steps: int | None = None, guidance: Any = None, scheduler: str | None = None,
                 height: int | None = None, width: int | None = None, background: bool = True) -> None:
        """Check the parameters (ValueError/TypeError at once), then run; a running run is replaced.

        Parameters left None take the controls' current values; the controls then show what runs.
        guidance: a number, or anything nbd.trace accepts (per-step sequence, callable step -> number).
        background=False runs in the calling thread and returns when done (Colab, scripts).
        """
        if self._closed:
            raise RuntimeError("this Explorer was closed; create a new one")
        if not isinstance(background, bool):
            raise TypeError(f"background must be True or False, got {background!r}")
        given = dict(prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps, guidance=guidance,
                     scheduler=scheduler, height=height, width=width)
        params = {k: (getattr(self, k) if v is None else v) for k, v in given.items()}
        if not self.size_options and height is None and width is None:
            params["height"] = params["width"] = None  # the model's own size
        control = RunControl()
        live = _Live(self, background)
        run = prepare(self.pipe, control=control, on_step=live.on_step, **params)
        job = Job(run, control, background, context=live)
        with self._quietly():  # programmatic trait writes must not steer the run being replaced
            self.set_trait("prompt", run.prompt)
            self.set_trait("negative_prompt", run.negative_prompt)
            self.set_trait("seed", run.seed)
            self.set_trait("steps", run.steps)
            self.set_trait("guidance_max", float(max(self.guidance_max, math.ceil(max(run.schedule)))))
            self.set_trait("guidance", float(run.schedule[0]))
            name = params["scheduler"]
            self.set_trait("scheduler", name if isinstance(name, str) else scheduler_name(run.scheduler))
            if self.size_options:
                self.set_trait("height", run.height)
                self.set_trait("width", run.width)
            self.set_trait("error", "")
            self.set_trait("error_details", "")
        self._runner.submit(job)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no run is going or waiting; False when `timeout` seconds ran out first.

        A failed run does not raise here: its message is in `ex.error` (and shown in the widget).
        """
        return self._runner.wait(timeout)

    def stop(self) -> None:
        """Stop the running run after its current step (its trajectory keeps what was done)."""
        self._runner.stop()

    def pause(self) -> None:
        """Hold the run before its next step; the shown frame is then decoded with the full VAE."""
        job = self._runner.current
        if job is None or job.control.stopped:
            return
        with self._sync_lock:
            if job.done.is_set():
                return
            job.control.pause()
            self.status = "pausing"
        self._decoder.submit(self._publish_when_held, job, 0)

    def resume(self) -> None:
        job = self._runner.current
        if job is None:
            return
        with self._sync_lock:
            job.control.resume()
            if not job.done.is_set():
                self.status = "running"

    def step(self) -> None:
        """Run one more step, then hold (pauses a running run after its next step)."""
        job = self._runner.current
        if job is None or job.control.stopped:
            return
        done = len(job.trajectory) if job.trajectory is not None else 0
        with self._sync_lock:
            if job.done.is_set():
                return
            job.control.step_once()
            self.status = "pausing"
        self._decoder.submit(self._publish_when_held, job, done + 1)

    @property
    def trajectory(self) -> Any:
        """The latest run's Trajectory (live while it runs), or None before the first run."""
        return self.history[-1] if self.history else None

    @property
    def running(self) -> bool:
        return self._runner.busy

    def close(self) -> None:
        """Stop the run, end this widget's threads and close it in the browser."""
        if getattr(self, "_closed", True) is False:
            self._closed = True
            self._runner.close()
            self._decoder.shutdown(wait=True, cancel_futures=True)
        super().close()

    def __repr__(self) -> str:
        n, total = self.n_steps, self.total_steps
        return f"Explorer(status={self.status!r}, steps={n}/{total}, prompt={self.prompt!r})"

    # --- defaults ---------------------------------------------------------------------
    def _defaults(self, given: dict[str, Any]) -> dict[str, Any]:
        pipe = self.pipe
        family = family_for(pipe)
        embedded = getattr(pipe, "_nbd_source", None) == EMBEDDED_SOURCE
        options = schedulers(pipe)
        own = scheduler_name(pipe.scheduler)
        values: dict[str, Any] = {
            "prompt": "big red circle on the left, white background" if embedded else "a lighthouse on a cliff at dusk",
            "negative_prompt": "",
            "seed": 0,
            "steps": 30,
            "guidance": 5.0 if embedded else 7.5,
            "scheduler": own if own in options else ("euler" if "euler" in options else options[0]),
        }
        values.update({k: v for k, v in given.items() if k not in ("height", "width")})
        default_h, default_w = family.default_size()
        sizes = [] if embedded else size_choices(max(default_h, default_w), family.vae_factor)
        height, width = given.get("height"), given.get("width")
        if sizes or height is not None or width is not None:
            sizes = sorted(set(sizes) | {v for v in (height, width) if isinstance(v, int)})
        if not isinstance(values["guidance"], (int, float)) or isinstance(values["guidance"], bool):
            raise TypeError(f"Explorer(guidance=...) must be a number (the slider's start), got {values['guidance']!r}")
        # prepare() checks every value the way generate() will, without model work.
        run = prepare(pipe, values["prompt"], negative_prompt=values["negative_prompt"], steps=values["steps"],
                      guidance=values["guidance"], seed=values["seed"], scheduler=values["scheduler"],
                      height=height, width=width)
        label = getattr(pipe, "_nbd_source", None) or pipe.config.get("_name_or_path") or type(pipe).__name__
        return dict(values, guidance=float(values["guidance"]), scheduler_options=options, size_options=sizes,
                    height=run.height, width=run.width, guidance_max=float(max(15, math.ceil(2 * values["guidance"]))),
                    image_size=[run.width, run.height], model_label=str(label))

    # --- trait observers --------------------------------------------------------------
    @t.observe("guidance")
    def _guidance_changed(self, change: dict) -> None:
        if self._quiet:
            return
        job = self._runner.current
        if job is not None and not job.done.is_set():
            try:
                job.control.set_guidance(change["new"])
            except (TypeError, ValueError) as exc:
                self._show_error(exc)

    @contextlib.contextmanager
    def _quietly(self):
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    # --- messages from the browser ------------------------------------------------------
    def _on_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        # Runs in the kernel's main thread: anything raised here would reach only a server
        # log, so every failure goes to the widget's error box instead.
        try:
            kind = content.get("type") if isinstance(content, dict) else None
            if kind == "ack":
                live = self._live
                if live is not None and live.run_id == content.get("run"):
                    live.pacer.ack(content.get("seq"))
            elif kind == "generate":
                self.generate()
            elif kind == "stop":
                self.stop()
            elif kind == "pause":
                self.pause()
            elif kind == "resume":
                self.resume()
            elif kind == "step":
                self.step()
            elif kind == "scrub":
                self._scrub(content.get("run"), content.get("k"))
        except Exception as exc:
            self._show_error(exc)

    def _show_error(self, exc: BaseException, step: int | None = None, total: int | None = None) -> None:
        with self._sync_lock:
            self.error_details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.error = describe_error(exc, step, total)

    def _scrub(self, run: Any, k: Any) -> None:
        traj = self.trajectory
        if (traj is None or run != self.run_id or self.status in ("running", "pausing") or not isinstance(k, int)
                or not 0 <= k < len(traj)):
            return
        self._scrub_target = (run, k)
        with contextlib.suppress(RuntimeError):  # decoder shut down: the widget is closing
            self._decoder.submit(self._send_full, traj, run, k)

    def _send_full(self, traj: Any, run: str, k: int) -> None:
        if self._scrub_target != (run, k):
            return  # the user has moved on; newest request wins here too
        try:
            frames = full_frames(traj, k)
        except Exception as exc:
            self._show_error(exc)
            return
        self.send({"type": "full", "run": run, "k": k, "views": list(VIEWS)}, frames)

    # --- a run, in the worker thread (or the caller's, for foreground runs) ----------------
    def _execute(self, job: Job) -> None:
        live, run = job.context, job.run
        with self._sync_lock:
            self._live = live
            with self.hold_sync():
                self.run_id = live.run_id
                self.status = "running"
                self.n_steps = 0
                self.total_steps = run.steps
                self.its = 0.0
                self.seconds = 0.0
                self.guidances = []
                self.frames_x0 = []
                self.frames_xt = []
                self.full_frames = {}
                self.frame = -1
                self.image_size = [run.width, run.height]
                self.error = ""
                self.error_details = ""
        failure: BaseException | None = None
        try:
            run.execute()
        except BaseException as exc:  # any failure shows in the widget; the kernel and the next run live on
            failure = exc
        self._finish(job, live, failure)
        if isinstance(failure, KeyboardInterrupt) and not job.background:
            raise failure

    def _finish(self, job: Job, live: "_Live", failure: BaseException | None) -> None:
        traj = job.trajectory
        if traj is not None:
            live.adopt(traj)
        live.pacer.close()  # from here on the state carries everything
        state, problem = self._full_state(live, traj)
        problems = [p for p in (failure, problem) if p is not None]
        n = state["n_steps"]
        with self._sync_lock:
            with self.hold_sync():
                self._assign(state)
                self.frame = -1
                if problems and not isinstance(problems[0], KeyboardInterrupt):
                    self._show_error(problems[0], n if problems[0] is failure else None, job.run.steps)
                    self.status = "error"
                else:
                    self.status = "stopped" if (traj is None or traj.stopped) and n < job.run.steps else "done"

    def _publish_when_held(self, job: Job, at_least: int) -> None:
        """Once the run holds (pause or single step) with `at_least` steps, show its state in full."""
        control = job.control
        while not job.done.is_set() and not control.stopped and control.paused:
            if not control.wait_until_waiting(0.2):
                continue
            traj = job.trajectory
            if control.waiting and traj is not None and len(traj) >= at_least:
                self._publish_paused(job)
                return
            time.sleep(0.005)  # the loop was just released by step_once and has not run yet

    def _publish_paused(self, job: Job) -> None:
        state, problem = self._full_state(job.context, job.trajectory)
        with self._sync_lock:
            if not (job.control.paused and job.control.waiting) or job.done.is_set():
                return  # resumed or stopped meanwhile
            with self.hold_sync():
                self._assign(state)
                self.status = "paused"
            if problem is not None:
                self._show_error(problem)

    def _full_state(self, live: "_Live", traj: Any) -> tuple[dict, BaseException | None]:
        """Trait values showing every recorded step, the last one decoded by the full VAE; and what failed."""
        n = len(traj) if traj is not None else 0
        state: dict[str, Any] = {"frames_x0": [], "frames_xt": [], "full_frames": {}, "n_steps": n,
                                 "guidances": list(traj.guidances) if traj is not None else [],
                                 "its": live.its(), "seconds": live.seconds()}
        try:
            if live.stream is not None:
                state["frames_x0"], state["frames_xt"] = live.stream.snapshot(n)
            if n:
                state["full_frames"] = dict(zip((f"{n - 1}:{v}" for v in VIEWS), full_frames(traj, n - 1)))
        except Exception as exc:  # e.g. the VAE runs out of memory: keep the approx frames, say so
            return state, exc
        return state, None

    def _assign(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)


class _Live:
    """What one run streams to the browser: its frame stream, pacer and progress figures."""

    def __init__(self, explorer: Explorer, background: bool):
        self.explorer = explorer
        self.run_id = uuid.uuid4().hex[:12]
        self.traj: Any = None
        self.stream: FrameStream | None = None
        self.adopted = False
        self.pacer = Pacer(self._send, ack_timeout=ACK_TIMEOUT if background else FOREGROUND_ACK_TIMEOUT)

    def on_step(self, traj: Any, step: Any) -> None:
        # Per step the denoising thread only offers the step; it is encoded if and when it is sent.
        if self.stream is None:
            self.adopt(traj)
            self.stream = FrameStream(traj, self.pacer, self.message)
        self.stream.push(step.index)

    def adopt(self, traj: Any) -> None:
        if not self.adopted:
            self.adopted = True
            self.traj = traj
            self.explorer.history.append(traj)

    def message(self, k: int) -> dict:
        traj = self.traj
        return {"type": "frame", "run": self.run_id, "k": k, "n": len(traj), "total": traj.total_steps,
                "its": self.its(), "g": guidance_segments(traj.guidances)}

    def its(self) -> float:
        steps = list(self.traj)[-ITS_WINDOW:] if self.traj is not None else []
        spent = sum(s.seconds for s in steps)
        return round(len(steps) / spent, 2) if spent > 0 else 0.0

    def seconds(self) -> float:
        return round(sum(s.seconds for s in self.traj), 3) if self.traj is not None else 0.0

    def _send(self, content: dict, buffers: list) -> None:
        self.explorer.send(content, buffers)


def guidance_segments(guidances: list[float]) -> list[list[float]]:
    """[[first step, guidance], ...] where guidance changes: a few numbers instead of one per step."""
    segments: list[list[float]] = []
    for k, w in enumerate(guidances):
        if not segments or segments[-1][1] != w:
            segments.append([k, w])
    return segments


def size_choices(side: int, multiple: int) -> list[int]:
    """Square sides around the model's own size, each a multiple of the VAE factor."""
    choices = {max(multiple, round(side * f / multiple) * multiple) for f in (0.5, 0.75, 1, 1.25, 1.5, 2)}
    return sorted(choices)


def describe_error(exc: BaseException, step: int | None = None, total: int | None = None) -> str:
    """A failure in plain words, with what to try."""
    where = f" at step {step + 1} of {total}" if step is not None and total and step < total else ""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return (f"Out of memory{where}. Try a smaller size or fewer steps, or free memory used by other "
                f"notebooks; then press Generate again. ({type(exc).__name__}: {text.splitlines()[0][:200]})")
    if isinstance(exc, (ValueError, TypeError)) and step is None:
        return f"Cannot start: {text}"
    return f"The run failed{where}: {type(exc).__name__}: {text.splitlines()[0][:300]}"
