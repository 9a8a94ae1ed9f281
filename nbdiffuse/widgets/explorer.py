"""Explorer: type a prompt, press Generate and watch every denoising step form; scrub, steer, pause.

The kernel side keeps the controls' state in traits and runs generation in a worker thread
(widget events are only handled while the cell is idle). Frames travel two ways:

- live, as paced custom messages (newest frame wins, the browser acks, at most two in flight),
  so a fast GPU never pushes Jupyter past its 1000 messages/s limit;
- at the end of a run (and on pause) as widget state: one frame per step and view in
  `frames_x0` / `frames_xt` (frames.encode_frame: raw RGB up to 32 x 32 pixels, else JPEG),
  plus the full-VAE frame of the shown step in `full_frames` (lossless WebP). State is what a
  saved notebook keeps, so scrubbing works later without a kernel.
"""
from __future__ import annotations

import contextlib
import math
import os
import pathlib
import threading
import time
import traceback
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anywidget
import traitlets as t
from PIL import Image

from ..core import RunControl, Trajectory, load_pipeline, prepare, schedulers
from ..core.device_memory import release_after
from ..core.generic import adapter_for, is_generic
from ..core.loading import tiny_decoder
from ..core.model_identity import UNKNOWN, model_change
from ..core.nbd_schema import check_lineage
from ..core.trajectory import CAPABILITIES
from ..core.img2img import DEFAULT_STRENGTH, check_strength
from ..core.schedulers import scheduler_name
from ..core.validate import MAX_SEED, MAX_STEPS, check_choice, check_guidance_value
from ..frames import VIEWS, frame_decoder, full_frames, steps_frames
from . import compare_view, history as run_tree, start_picture
from .browser_requests import BrowserRequests
from .control_defaults import model_defaults, saved_defaults
from .export_files import EXPORT_KINDS, export_path, write_export
from .live_run import LiveRun, noting
from .plain_words import capabilities_state, describe_error
from .runner import Job, Runner
from .trait_checks import ExplorerTraitChecks
from .assets import module, stylesheet

_HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "height", "width", "view")
VIEW_MODES = ("both", "x0", "xt")
PREVIEWS = ("auto", "approx", "tiny")  # Explorer.preview
EXPORTS_SHOWN = 8  # newest written files listed in the widget
SWAP_STOP_TIMEOUT = 120.0  # s: set_pipeline waits this long for a running run to stop after its current step
ADVICE = "scrub, compare or export it, or ex.set_pipeline(...) back to its model to branch it"
WORKSHOP_NOTE = ("Workshop mode: saved runs, no model loaded. Generate and Branch are off; scrubbing, what-if "
                 "guidance, compare and exports work. Pass pipe=... to Explorer.from_files to generate.")


class Explorer(ExplorerTraitChecks, BrowserRequests, anywidget.AnyWidget):  # trait_checks: checked when set
    """Live denoising explorer: `nbd.Explorer(pipe=None, **defaults)`; show it as a cell's value.

    defaults: prompt, negative_prompt, seed, steps, guidance, scheduler, height, width, and
    view ("both", "x0" or "xt"). pipe None loads the embedded model (nbd.load_pipeline()).

    preview: what decodes the frames sent while a run goes. "approx" (the approx decoder fitted
    to the VAE, at latent resolution: nearly free), "tiny" (the tiny autoencoder given to
    nbd.set_tiny_decoder, e.g. TAESD, at the output size: sharper, one small decode per frame
    sent), or "auto" (tiny when the pipeline has one). The frames kept for the scrubber are
    approx ones either way; a paused, scrubbed or final frame is decoded by the full VAE.

    Generate during a run replaces it (see nbdiffuse.widgets.runner). Programmatic use:
    `ex.generate(**params)` checks its arguments at once, then runs in the background
    (`background=False` runs in the calling cell: for Colab, which shows no updates from
    threads); `ex.wait()`, `ex.stop()`, `ex.pause()`, `ex.resume()`, `ex.step()`;
    `ex.trajectory` is the latest run and `ex.history` the runs kept.

    max_runs (default 50, nbdiffuse.widgets.history.MAX_RUNS) bounds `ex.history`: when a new
    run ends beyond it, the oldest runs are dropped, never the newest nor the run it branched
    from; `ex.runs_dropped` counts them and the run tree's labels keep counting every run made.
    Save a run first with `ex.export("nbd", run=...)` or `traj.save(path)`; max_runs=None keeps
    every run (trim `ex.history` yourself). Set `ex.max_runs` at any time; it applies when the next run ends.
    The frames kept per run for loading and comparing are an LRU of 16 runs (FRAME_CACHE_RUNS).
    """

    _esm = module(_HERE / "explorer.js", _HERE / "explorer_parts.js")
    _css = stylesheet(_HERE / "explorer.css")

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
    # What decodes the frames sent while a run goes: "approx" (latent resolution), "tiny"
    # (the tiny autoencoder set with nbd.set_tiny_decoder, output resolution), "auto" (tiny when set).
    preview = t.Unicode("auto").tag(sync=True)
    frame = t.Int(-1).tag(sync=True)  # step the scrubber shows; -1 follows the newest

    # Run state: the kernel writes it at the start, pause and end of a run.
    model_label = t.Unicode("").tag(sync=True)
    run_id = t.Unicode("").tag(sync=True)
    status = t.Unicode("idle").tag(sync=True)  # idle running pausing paused done stopped error
    n_steps = t.Int(0).tag(sync=True)
    total_steps = t.Int(0).tag(sync=True)
    its = t.Float(0.0).tag(sync=True)  # steps per second of `seconds` (run_clock.RunClock)
    seconds = t.Float(0.0).tag(sync=True)  # wall time of the run so far, pauses left out
    guidances = t.List(t.Float()).tag(sync=True)
    image_size = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)  # [width, height] of the output
    frames_x0 = t.List(t.Bytes()).tag(sync=True)
    frames_xt = t.List(t.Bytes()).tag(sync=True)
    frames_decoder = t.Unicode("approx").tag(sync=True)  # what drew frames_x0/xt: frames.FRAME_DECODERS
    full_frames = t.Dict().tag(sync=True)  # "k:view" -> PNG bytes (full VAE) of the shown step
    error = t.Unicode("").tag(sync=True)
    error_details = t.Unicode("").tag(sync=True)
    notices = t.List(t.Unicode()).tag(sync=True)  # the shown run's traj.notices (unknown words, truncation, ...)
    guidance_note = t.Unicode("").tag(sync=True)  # why the guidance slider moved by itself (Continue from here)
    # The number fields' allowed values, from core.validate (the browser says them and refuses others).
    input_limits = t.Dict({"seed": [0, min(MAX_SEED, 2**53 - 1)], "steps": [1, MAX_STEPS]}).tag(sync=True)

    # Exploring: the run tree, compare view, exports and workshop mode.
    has_pipe = t.Bool(True).tag(sync=True)  # False: saved runs only (Explorer.from_files without pipe)
    workshop_note = t.Unicode("").tag(sync=True)
    runs = t.List(t.Dict()).tag(sync=True)  # history panel nodes, parents before children
    run_thumbs = t.List(t.Bytes()).tag(sync=True)  # by history index
    runs_dropped = t.Int(0).tag(sync=True)  # older runs dropped from ex.history by max_runs
    shown_run = t.Unicode("").tag(sync=True)  # id of the run on screen
    comparison = t.Dict().tag(sync=True)  # ids, labels, pairs, difference per pair, locks_in_at
    compare_a = t.List(t.Bytes()).tag(sync=True)
    compare_b = t.List(t.Bytes()).tag(sync=True)
    compare_heat = t.List(t.Bytes()).tag(sync=True)
    export_dir = t.Unicode("").tag(sync=True)
    export_files = t.List(t.Unicode()).tag(sync=True)  # newest first
    mp4 = t.Bool(False).tag(sync=True)  # imageio-ffmpeg importable
    # Image to image: the start picture's thumbnail, whether Generate uses it, and its strength.
    start_thumb = t.Bytes(b"").tag(sync=True)
    use_picture = t.Bool(False).tag(sync=True)
    strength = t.Float(DEFAULT_STRENGTH).tag(sync=True)
    # What the pipeline (or the shown run) can do: x0, what_if, branch, live_guidance, previews. A pipeline
    # outside the known families gives x_t only (core/generic.py): the browser hides what it cannot do
    # and shows `capabilities_note`, one line saying why.
    capabilities = t.Dict(dict(CAPABILITIES)).tag(sync=True)
    capabilities_note = t.Unicode("").tag(sync=True)

    def __init__(self, pipe: Any = None, *, max_runs: int | None = run_tree.MAX_RUNS, preview: str = "auto",
                 _runs: list | None = None, **defaults: Any):
        self.max_runs = run_tree.check_max_runs(max_runs)
        check_choice("preview", preview, PREVIEWS)
        unknown = sorted(set(defaults) - set(DEFAULT_KEYS))
        if unknown:
            raise TypeError(f"Explorer() got unknown default(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULT_KEYS)}")
        view = defaults.pop("view", None)
        if view is not None and view not in VIEW_MODES:
            raise ValueError(f"view must be one of {', '.join(map(repr, VIEW_MODES))}; got {view!r}")
        from ..core.video import mp4_available

        self.pipe = None if _runs is not None and pipe is None else load_pipeline(pipe)
        if view is None:  # x_t alone for a pipeline nbdiffuse watches through its step callback (no x0)
            view = "xt" if self.pipe is not None and is_generic(self.pipe) else "both"
        self.history: list = list(_runs or [])
        self._runner = Runner(self._execute)
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdiffuse-decode")
        self._sync_lock = threading.RLock()
        self._start_source: Any = None  # image to image: what start_from() was given
        self._live: LiveRun | None = None
        self._quiet = 0
        self._scrub_target: tuple[str, int] | None = None
        self._whatif_target: tuple | None = None
        self._shown_traj: Any = None
        # run id -> lossy frames per view (for loading, compare): an LRU of FRAME_CACHE_RUNS runs
        self._frames = run_tree.FrameCache(run_tree.FRAME_CACHE_RUNS)
        self._thumbs: dict[tuple[str, int], bytes] = {}  # (run id, steps) -> JPEG, for the runs in history
        self._run_numbers: dict[str, int] = {}  # run id -> n of its label #n, counting every run made
        self._runs_made = 0
        self._closed = False
        values = model_defaults(self.pipe, defaults) if self.pipe is not None else saved_defaults(self.history, defaults)
        super().__init__(_uid=uuid.uuid4().hex, view=view, preview=preview, export_dir=os.getcwd(), mp4=mp4_available(),
                         has_pipe=self.pipe is not None, workshop_note="" if self.pipe is not None else WORKSHOP_NOTE,
                         **capabilities_state(self.pipe), **values)
        self.on_msg(self._on_msg)
        if self.history:
            self._refresh_runs()
            self.load_run(0)

    @classmethod
    def from_files(cls, paths: Any, pipe: Any = None, **defaults: Any) -> "Explorer":
        """Workshop mode: an Explorer over saved trajectories (.nbd files).

        Without `pipe` no model is needed: scrub, what-if guidance (from the stored eps pairs),
        compare and export work; Generate and Branch are off. With the pipeline that made the
        runs, frames are also decoded by its VAE and branching works.
        """
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
        return cls(pipe, _runs=runs, **defaults)

    # --- public API -------------------------------------------------------------------
    def generate(self, prompt: str | None = None, *, negative_prompt: str | None = None, seed: int | None = None,
                 steps: int | None = None, guidance: Any = None, scheduler: str | None = None,
                 height: int | None = None, width: int | None = None, background: bool = True, image: Any = None,
                 strength: float | None = None) -> None:
        """Check the parameters (ValueError/TypeError at once), then run; a running run is replaced.

        Parameters left None take the controls' current values; the controls then show what runs.
        guidance: a number, or anything nbd.trace accepts (per-step sequence, callable step -> number).
        image, strength: image to image from this picture (PIL image, array, file path or a
        SketchPad); without them, the start picture set by start_from() when "use" is on.
        background=False runs in the calling thread and returns when done (Colab, scripts).
        """
        if self._closed:
            raise RuntimeError("this Explorer was closed; create a new one")
        self._need_pipe("generate")
        if not isinstance(background, bool):
            raise TypeError(f"background must be True or False, got {background!r}")
        given = dict(prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps, guidance=guidance,
                     scheduler=scheduler, height=height, width=width)
        params = {k: (getattr(self, k) if v is None else v) for k, v in given.items()}
        if not self.size_options and height is None and width is None:
            params["height"] = params["width"] = None  # the model's own size
        if image is None and self.use_picture and self._start_source is not None:
            image = self._start_source
        if image is not None:
            params["image"] = start_picture.picture_of(image)
            if image is self._start_source:  # a SketchPad: show the drawing this run starts from
                self.start_thumb = start_picture.thumbnail(params["image"])
            params["strength"] = self.strength if strength is None else strength
            if self.size_options and height is None and width is None:
                params["height"] = params["width"] = None  # the picture's own size
        elif strength is not None:
            raise ValueError(f"strength={strength!r} needs a start picture: pass image=... or call ex.start_from(...)")
        control = RunControl()
        live = LiveRun(self, background, self._live_preview())
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
            self.set_trait("guidance_note", "")
        self._runner.submit(job)

    def start_from(self, source: Any = None, strength: float | None = None) -> None:
        """Start the next runs from a picture (PIL image, uint8 array, file path, image bytes or a
        SketchPad, read at each Generate); None goes back to starting from noise."""
        if strength is not None:
            self.strength = check_strength(strength)
        if source is None:
            self._start_source = None
            self.start_thumb, self.use_picture = b"", False
            return
        self._need_pipe("image to image (start_from)")
        picture = start_picture.picture_of(source, "source")
        self._start_source = source if hasattr(source, "image") and not isinstance(source, Image.Image) else picture
        self.start_thumb, self.use_picture = start_picture.thumbnail(picture), True

    def sketch_pad(self, **options: Any) -> Any:
        """A SketchPad the next runs start from (show it, draw, press Generate). options: SketchPad's."""
        from .sketch import SketchPad

        if self.pipe is not None and "width" not in options and "height" not in options:
            h, w = adapter_for(self.pipe).default_size() or (256, 256)
            scale = max(1, 256 // max(h, w))
            options.update(width=min(2048, max(16, w * scale)), height=min(2048, max(16, h * scale)))
        pad = SketchPad(**options)
        self.start_from(pad)
        return pad

    @t.validate("preview")
    def _check_preview(self, proposal: Any) -> str:
        return check_choice("preview", proposal["value"], PREVIEWS)

    def _live_preview(self) -> str:
        """`preview`, checked against the pipeline: what frames.frame_decoder chooses from for the next run."""
        if self.preview == "tiny" and (self.pipe is None or tiny_decoder(self.pipe) is None):
            raise ValueError("preview='tiny' needs a tiny decoder for this pipeline: "
                             "nbd.set_tiny_decoder(pipe, AutoencoderTiny...) first, or preview='auto' or 'approx'")
        return self.preview

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
            job.context.clock.release()
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
            job.context.clock.release()
            self.status = "pausing"
        self._decoder.submit(self._publish_when_held, job, done + 1)

    def set_pipeline(self, pipe: Any, **options: Any) -> None:
        """Swap the model: the next Generate and Branch use `pipe`; `ex.history` stays.

        pipe, options: what nbd.load_pipeline takes (a pipeline object, a folder, a hub id, None for
        the embedded model; device=, dtype=, lora=, lora_scale=). It loads first: if that fails,
        nothing changes. Then a running run is stopped (it stays in the history) and the controls
        follow the new model: its scheduler and size choices, its own size, the model label and what
        it can do. A control still at the old model's default (prompt, guidance, steps, scheduler,
        ...) takes the new model's; one you changed is kept where the new model takes it.
        Old runs stay in the run tree (scrub, what-if, compare, export) and let go of their model so
        its memory can be freed: they show their approx frames (`traj.attach(old_pipe)` brings full
        VAE frames back). Branching an old run continues it with the new model when both share a
        latent space (same family; `traj.notices` then says which model made which steps); across
        families it is refused.
        """
        if self._closed:
            raise RuntimeError("this Explorer was closed; create a new one")
        new = load_pipeline(pipe, **options)
        old = self.pipe
        was = model_defaults(old, {}) if old is not None else {}  # the old model's defaults: what the user left as is
        if self._runner.busy:
            self.stop()
            if not self._runner.wait(SWAP_STOP_TIMEOUT):
                raise RuntimeError(f"the running run did not stop within {SWAP_STOP_TIMEOUT:g} s, so the model was "
                                   "not swapped; stop it (ex.stop()) and try again")
        kept = {key: getattr(self, key) for key in ("prompt", "negative_prompt", "seed", "steps", "guidance",
                                                     "scheduler") if key not in was or getattr(self, key) != was[key]}
        self.pipe = new
        try:
            if kept.get("scheduler") not in schedulers(new):
                kept.pop("scheduler", None)
            try:
                values = model_defaults(new, kept)
            except (TypeError, ValueError):  # something kept does not suit the new model: its own defaults
                values = model_defaults(new, {})
        except BaseException:
            self.pipe = old
            raise
        if old is not None and old is not new:
            self._let_go_of(old)
        values.pop("image_size", None)  # the shown run keeps its size
        view = self.view
        if view == ("xt" if old is not None and is_generic(old) else "both"):
            view = "xt" if is_generic(new) else "both"
        shown = self.shown
        with self._sync_lock, self._quietly(), self.hold_sync():
            self._assign(values)
            self.view = view
            self.has_pipe, self.workshop_note = True, ""
            self._assign(capabilities_state(shown if shown is not None else new))
            self.error = self.error_details = ""

    def _let_go_of(self, old: Any) -> None:
        """Detach the runs of a replaced model from it (its memory can go), keeping their approx decoders."""
        self._made_by = getattr(self, "_made_by", {})  # run id -> weak reference to the model that made it
        for traj in list(self.history):
            if traj.pipe is old:
                with contextlib.suppress(Exception):  # no approx fit: the run keeps the frames already made
                    traj.approx_decoder()
                traj.pipe = None
                self._made_by[traj.id] = weakref.ref(old)

    def _model_change(self, parent: Any, at: int) -> str | None:
        """Branching `parent` with the Explorer's model: None when it made the run; a notice when it is
        another model of the run's family (one latent space); refused across families."""
        ref = getattr(self, "_made_by", {}).get(parent.id)
        maker = parent.pipe if parent.pipe is not None else ref() if ref is not None else UNKNOWN
        return model_change(parent.params, self.pipe, at, maker, "the Explorer", ADVICE)  # core/model_identity.py

    # --- exploring: what-if, branches, the run tree, compare, exports ----------------------
    @property
    def shown(self) -> Any:
        """The Trajectory on screen: the running one, or the run last loaded (load_run) or finished."""
        if self._shown_traj is not None:
            return self._shown_traj
        live = self._live
        return live.traj if live is not None and live.traj is not None else self.trajectory

    def shown_step(self) -> int:
        """The step the scrubber shows (the last one while it follows the run)."""
        traj = self.shown
        if traj is None or len(traj) == 0:
            raise ValueError("no run to show yet: generate one, or load saved runs with Explorer.from_files")
        return len(traj) - 1 if self.frame < 0 or self.frame >= len(traj) else self.frame

    def what_if(self, guidance: float, k: int | None = None, decoder: str = "approx") -> Any:
        """The x0 of step k (default: the shown step) re-weighed with `guidance`: no model call. -> PIL.Image"""
        w = check_guidance_value(guidance)
        check_choice("decoder", decoder, ("approx", "full"))
        traj = self.shown
        k = self.shown_step() if k is None else k
        return traj.guided_image(k, w, decoder=decoder)

    def branch(self, at: int | None = None, *, background: bool = True, **changes: Any) -> None:
        """Continue the shown run from step `at` (default: the shown step) with `changes`.

        changes: prompt, negative_prompt, guidance, scheduler, steps, seed (as nbd.branch takes them).
        Bad values raise at once; the branch then runs like a generated run and joins the run tree.
        """
        self._need_pipe("branch")
        if not isinstance(background, bool):
            raise TypeError(f"background must be True or False, got {background!r}")
        parent = self.shown
        at = self.shown_step() if at is None else at
        changes = run_tree.check_branch(self.pipe, parent, at, changes)
        notice = self._model_change(parent, at)  # a run of a swapped-out model (set_pipeline)
        control = RunControl()
        live = LiveRun(self, background, self._live_preview())
        live.prefix = self._frames_of(parent, upto=at + 1)[:2]
        run = run_tree.BranchRun(self.pipe, parent, at, changes, control, noting(live.on_step, notice))
        with self._quietly():
            for key in ("prompt", "negative_prompt", "seed", "steps", "scheduler"):
                self.set_trait(key, changes.get(key, parent.params[key]))
            note = ""
            if isinstance(changes.get("guidance"), (int, float)):
                # The slider follows the branch it steers; say so, as it moved without the user.
                if float(changes["guidance"]) != self.guidance:
                    note = (f"Guidance {self.guidance:g} → {float(changes['guidance']):g}: the branch from step "
                            f"{at + 1} runs with it; the slider steers it, and Generate uses it")
                self.set_trait("guidance", float(changes["guidance"]))
            self.set_trait("guidance_note", note)
            self.set_trait("error", "")
            self.set_trait("error_details", "")
        self._runner.submit(Job(run, control, background, context=live))

    def continue_from(self, guidance: float, k: int | None = None, background: bool = True) -> None:
        """What-if made real: branch the shown run from step k with `guidance` for the rest."""
        self.branch(k, guidance=check_guidance_value(guidance), background=background)

    def load_run(self, which: Any) -> Any:
        """Show run `which` (history index, run id, or Trajectory) in the Explorer; returns it."""
        traj = run_tree.find_run(self.history, which)
        if self._runner.busy:
            self.stop()
            self._runner.wait()
        frames_x0, frames_xt, decoder = self._frames_of(traj)
        full: dict = {}
        problem = None
        if traj.pipe is not None and len(traj):
            try:
                full = {key: png for key, png in zip((f"{len(traj) - 1}:{v}" for v in VIEWS),
                                                     full_frames(traj, len(traj) - 1)) if png}
            except Exception as exc:  # keep the lossy frames, say what failed
                problem = exc
        p = traj.params
        with self._sync_lock:
            self._shown_traj = traj
            self._live = None
            with self._quietly(), self.hold_sync():
                self.run_id = uuid.uuid4().hex[:12]
                self.shown_run = traj.id
                self.n_steps = len(traj)
                self.total_steps = traj.total_steps
                self.guidances = list(traj.guidances)
                self.frames_x0, self.frames_xt, self.full_frames = frames_x0, frames_xt, full
                self.frames_decoder = decoder
                self.image_size = [int(p["width"]), int(p["height"])]
                self.seconds = round(sum(s.seconds for s in traj), 3)  # its wall time was not kept: its model time
                self.its = round(len(traj) / self.seconds, 2) if self.seconds > 0 else 0.0
                self.notices = traj.notices
                self.guidance_note = ""
                self.frame = -1
                self.prompt, self.negative_prompt = p["prompt"], p["negative_prompt"] or ""
                self.seed, self.steps = int(p["seed"]), int(p["steps"])
                if p["scheduler"] in self.scheduler_options:
                    self.scheduler = p["scheduler"]
                if traj.guidances:
                    self.guidance_max = float(max(self.guidance_max, math.ceil(max(traj.guidances))))
                    self.guidance = float(traj.guidances[-1])
                self.status = "stopped" if traj.stopped and len(traj) < traj.total_steps else "done"
                self.error = self.error_details = ""
                self._assign(capabilities_state(traj))
        if problem is not None:
            self._show_error(problem)
        return traj

    def compare(self, a: Any = -2, b: Any = -1, view: str | None = None) -> Any:
        """Show runs a and b (index, id or Trajectory) side by side; returns the core Comparison.

        view: "x0", "xt", or None: x0 when both runs have it, else x_t."""
        if view is not None:
            check_choice("view", view, VIEWS)
        ta = run_tree.find_run(self.history, a, "a")
        tb = run_tree.find_run(self.history, b, "b")
        comparison, state = compare_view.compare_state(ta, tb, self._label(ta), self._label(tb), self._frames_of,
                                                       view)
        with self._sync_lock, self.hold_sync():
            self._assign(state)
        return comparison

    def close_compare(self) -> None:
        with self._sync_lock, self.hold_sync():
            self._assign(compare_view.empty_state())

    def export(self, kind: str, path: Any = None, *, run: Any = None, k: int | None = None, view: str | None = None,
               start: int | None = None, stop: int | None = None, fps: float = 8, decoder: str | None = None,
               size: Any = None) -> pathlib.Path:
        """Write the shown run (or `run`) as a file; returns its path.

        kind: "png" (step k, every parameter in its "parameters" text chunk), "gif" / "mp4" (steps
        [start, stop) of one view; mp4 needs imageio-ffmpeg), "html" (a self-contained page that
        works offline), "nbd" (the trajectory, for nbd.Trajectory.load / Explorer.from_files).
        path None: a new file in `export_dir` (default: the kernel's working directory, the notebook's
        folder in JupyterLab), named for the prompt, the run's number and the step or step range, e.g.
        big-red-circle-on-the-left_run3_step12_x0.png (export_files.export_path); never over an earlier file.
        """
        check_choice("kind", kind, EXPORT_KINDS)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
            raise TypeError(f"k must be a step index (int) or None, got {k!r}")
        traj = self.shown if run is None else run_tree.find_run(self.history, run)
        if traj is None or len(traj) == 0:
            raise ValueError("no run to export yet: generate one, or load saved runs with Explorer.from_files")
        view = view or ("xt" if self.view == "xt" or not traj.has_x0 else "x0")
        check_choice("view", view, VIEWS)
        # A png of the shown run shows the scrubber's step; of another run, its last step.
        step = k if k is not None else (self.shown_step() if traj is self.shown else -1)
        number = int(self._label(traj)[1:])
        target = export_path(traj, kind, path, self.export_dir, step, view, number, start, stop)
        write_export(traj, kind, target, step=step, view=view, start=start, stop=stop, fps=fps, decoder=decoder,
                     size=size)
        with self._sync_lock:
            shown = str(target)
            self.export_files = [shown] + [f for f in self.export_files if f != shown][: EXPORTS_SHOWN - 1]
        return target

    def _need_pipe(self, what: str) -> None:
        if self.pipe is None:
            raise ValueError(f"{what} needs a pipeline, and this Explorer has none (workshop mode: saved runs only). "
                             "Use nbd.Explorer.from_files(paths, pipe=...) to generate and branch")

    def _frames_of(self, traj: Any, upto: int | None = None) -> tuple[list, list, str]:
        """A run's per-step frames (x0, xt) and what drew them (frames.frame_decoder): kept from its
        live stream, else made once here."""
        n = len(traj) if upto is None else upto
        known = self._frames.get(traj.id)
        if known is None or len(known[0]) < n:
            decoder = frame_decoder(traj, self.preview)
            every = upto is None or upto >= len(traj) or known is not None
            per_step = steps_frames(traj, range(len(traj) if every else n), VIEWS, decoder)
            made = ([f[0] for f in per_step], [f[1] for f in per_step], decoder)
            if not every:
                return made
            known = made
            self._frames.put(traj.id, known)
        return list(known[0][:n]), list(known[1][:n]), known[2]

    def _drop_old_runs(self, *keep: Any) -> None:
        """Keep ex.history within max_runs: the oldest runs go, never one of `keep`, the shown run or their parents."""
        keep = tuple(traj for traj in (*keep, self._shown_traj) if traj is not None)
        parents = {traj.params.get("parent") for traj in keep} - {None}
        keep += tuple(traj for traj in self.history if traj.id in parents)  # the tree shows where a branch came from
        gone = run_tree.runs_to_drop(self.history, self.max_runs, keep)
        if not gone:
            return
        self.history[:] = [traj for traj in self.history if not any(traj is g for g in gone)]  # same list object
        for traj in gone:
            self._frames.discard(traj.id)
        with self._sync_lock:
            self.runs_dropped += len(gone)

    def _label(self, traj: Any) -> str:
        """#n: the run's number among every run this Explorer made (dropped ones included)."""
        if traj.id not in self._run_numbers:
            self._runs_made += 1
            self._run_numbers[traj.id] = self._runs_made
        return f"#{self._run_numbers[traj.id]}"

    def _refresh_runs(self) -> None:
        history = list(self.history)
        thumbs, kept = [], {}
        for traj in history:
            key = (traj.id, len(traj))
            kept[key] = self._thumbs[key] if key in self._thumbs else run_tree.thumbnail(traj)
            thumbs.append(kept[key])
            self._label(traj)
        self._thumbs = kept  # only the runs still in history, at their current length
        self._run_numbers = {traj.id: self._run_numbers[traj.id] for traj in history}
        nodes = run_tree.run_nodes(history, self._run_numbers)
        with self._sync_lock, self.hold_sync():
            self.runs = nodes
            self.run_thumbs = thumbs

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

    # --- trait observers --------------------------------------------------------------
    @t.observe("guidance")
    def _guidance_changed(self, change: dict) -> None:
        if self._quiet:
            return
        self.guidance_note = ""  # the user moved the slider: the note about why it moved is old news
        job = self._runner.current
        if job is not None and not job.done.is_set() and self.capabilities.get("live_guidance", True):
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

    def _show_error(self, exc: BaseException, step: int | None = None, total: int | None = None) -> None:
        with self._sync_lock:
            self.error_details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.error = describe_error(exc, step, total)

    # --- a run, in the worker thread (or the caller's, for foreground runs) ----------------
    def _execute(self, job: Job) -> None:
        live, run = job.context, job.run
        prefix = live.prefix or ([], [])
        with self._sync_lock:
            self._live = live
            self._shown_traj = None
            with self.hold_sync():
                self.run_id = live.run_id
                self.shown_run = ""
                self.status = "running"
                self.n_steps = 0
                self.total_steps = run.total_steps
                self.its = 0.0
                self.seconds = 0.0
                self.guidances = []
                # A branch shows its parent's steps up to the branch point until its own arrive.
                self.frames_x0 = list(prefix[0])
                self.frames_xt = list(prefix[1])
                self.full_frames = {}
                self.frame = -1
                self.image_size = [run.width, run.height]
                self.error = ""
                self.error_details = ""
                self.notices = list(getattr(run, "notices", []))  # known before any model work
                self._assign(capabilities_state(run.pipe))
        failure: BaseException | None = None
        live.clock.start()
        try:
            run.execute()
        except BaseException as exc:  # any failure shows in the widget; the kernel and the next run live on
            failure = exc
        self._finish(job, live, failure)
        if isinstance(failure, KeyboardInterrupt) and not job.background:
            raise failure

    def _finish(self, job: Job, live: "LiveRun", failure: BaseException | None) -> None:
        traj = job.trajectory
        if traj is not None:
            live.adopt(traj)
        live.pacer.close()  # from here on the state carries everything
        if live.stream is not None:
            live.stream.close()
        state, problem = self._full_state(live, traj)
        problems = [p for p in (failure, problem) if p is not None]
        n = state["n_steps"]
        if traj is not None:
            self._frames.put(traj.id, (state["frames_x0"], state["frames_xt"], state["frames_decoder"]))
            self._drop_old_runs(traj)
            with contextlib.suppress(Exception):  # a thumbnail must never turn a finished run into a failure
                if n and state["full_frames"].get(f"{n - 1}:{traj.default_view}"):
                    # the final frame is decoded by the full VAE already: its true colours, at no cost
                    self._thumbs[(traj.id, n)] = run_tree.thumbnail(traj, decoder="full")
                self._refresh_runs()
        with self._sync_lock:
            with self.hold_sync():
                self._assign(state)
                self.frame = -1
                if traj is not None:
                    self._shown_traj = traj
                    self.shown_run = traj.id
                if problems and not isinstance(problems[0], KeyboardInterrupt):
                    self._show_error(problems[0], n if problems[0] is failure else None, job.run.total_steps)
                    self.status = "error"
                else:
                    self.status = "stopped" if (traj is None or traj.stopped) and n < job.run.total_steps else "done"
        for exc in problems:  # the message is out: now free what an out-of-memory run held
            release_after(exc)

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
            job.context.clock.hold()
            with self.hold_sync():
                self._assign(state)
                self.status = "paused"
            if problem is not None:
                self._show_error(problem)

    def _full_state(self, live: "LiveRun", traj: Any) -> tuple[dict, BaseException | None]:
        """Trait values showing every recorded step, the last one decoded by the full VAE; and what failed."""
        n = len(traj) if traj is not None else 0
        state: dict[str, Any] = {"frames_x0": [], "frames_xt": [], "frames_decoder": "approx", "full_frames": {},
                                 "n_steps": n,
                                 "guidances": list(traj.guidances) if traj is not None else [],
                                 "notices": traj.notices if traj is not None else self.notices,
                                 "its": live.its(), "seconds": live.seconds()}
        try:
            if live.stream is not None:
                state["frames_x0"], state["frames_xt"] = live.stream.snapshot(n)
                state["frames_decoder"] = live.stream.decoder
            if n:
                state["full_frames"] = {key: png for key, png in zip((f"{n - 1}:{v}" for v in VIEWS),
                                                                     full_frames(traj, n - 1)) if png}
        except Exception as exc:  # e.g. the VAE runs out of memory: keep the approx frames, say so
            return state, exc
        return state, None

    def _assign(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)
