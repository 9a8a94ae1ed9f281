"""The Explorer widget: type a prompt, press Generate and watch every denoising step form; scrub, steer, pause.

This module holds the widget class and its public API; its parts live beside it in this package:
traits.py (the synced state and how frames travel), lifecycle.py (a run's start, hold and end in
that state), kept_runs.py and run_tree.py (the runs kept, their frames, thumbnails and tree),
model_swap.py (set_pipeline), workshop.py (saved runs without a model) and browser.py (the page's
requests). The front end is the JavaScript beside them, concatenated by widgets/assets.py.
"""
from __future__ import annotations

import os
import pathlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import traitlets as t
from PIL import Image

from ...core import RunControl, load_pipeline, prepare
from ...core.img2img import check_strength
from ...core.pipe_attrs import tiny_decoder
from ...core.validate import check_choice, check_guidance_value
from ...core.video import mp4_available
from ..frames import VIEWS
from .. import compare_view, start_picture
from ..control_defaults import model_defaults, saved_defaults
from ..export_files import EXPORT_KINDS, export_path, write_export
from ..live_run import LiveRun, noting
from ..plain_words import capabilities_state
from ..runner import Job, Runner
from ..samplers import sampler_arg
from ..sketch import SketchPad
from . import model_swap, run_tree
from .browser import BrowserRequests
from .control_panel import CONTROL_ARGS, ControlPanel, control_traits
from .pag_panel import PagPanel, continue_pag, generate_pag, pag_traits
from .mask_panel import MaskPanel, mask_traits, masked_thumbnail
from .kept_runs import KeptRuns
from .lifecycle import RunLifecycle
from .run_controls import controls_of_branch, controls_of_run
from .switches import RunSwitches
from .trait_checks import VIEW_MODES
from .traits import PREVIEWS, ExplorerState
from .workshop import load_runs, need_pipe, workshop_state

DEFAULT_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "height", "width", "view")
EXPORTS_SHOWN = 8  # newest written files listed in the widget
SWAP_STOP_TIMEOUT = model_swap.SWAP_STOP_TIMEOUT


class Explorer(RunSwitches, ControlPanel, PagPanel, MaskPanel, ExplorerState):
    """Live denoising explorer: `nbd.Explorer(pipe=None, **defaults)`; show it as a cell's value.

    defaults: prompt, negative_prompt, seed, steps, guidance, scheduler, height, width, and
    view ("both", "x0" or "xt"); for a pipeline with a ControlNet also control_image (anything
    ex.control_from takes), control_scale, control_start, control_end, control_guess_mode and control_mode (a union
    ControlNet's kind of picture) (the controls' first values).
    pipe None loads the embedded model (nbd.load_pipeline()).

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

    max_runs (default 50, nbdiffuse.widgets.explorer.run_tree.MAX_RUNS) bounds `ex.history`: when a new
    run ends beyond it, the oldest runs are dropped, never the newest nor the run it branched
    from; `ex.runs_dropped` counts them and the run tree's labels keep counting every run made.
    Save a run first with `ex.export("nbd", run=...)` or `traj.save(path)`; max_runs=None keeps
    every run (trim `ex.history` yourself). Set `ex.max_runs` at any time; it applies when the next run ends.
    The frames kept per run for loading and comparing are an LRU of 16 runs (FRAME_CACHE_RUNS).
    """

    def __init__(self, pipe: Any = None, *, max_runs: int | None = run_tree.MAX_RUNS, preview: str = "auto",
                 _runs: list | None = None, **defaults: Any):
        self.max_runs = run_tree.check_max_runs(max_runs)
        check_choice("preview", preview, PREVIEWS)
        unknown = sorted(set(defaults) - set(DEFAULT_KEYS) - set(CONTROL_ARGS))
        if unknown:
            raise TypeError(f"Explorer() got unknown default(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(DEFAULT_KEYS + CONTROL_ARGS)}")
        control = {key: defaults.pop(key) for key in CONTROL_ARGS if key in defaults}
        view = defaults.pop("view", None)
        if view is not None and view not in VIEW_MODES:
            raise ValueError(f"view must be one of {', '.join(map(repr, VIEW_MODES))}; got {view!r}")
        self.pipe = None if _runs is not None and pipe is None else load_pipeline(pipe)
        if view is None:  # both (a run that records x_t alone shows x_t alone: stage.js)
            view = "both"
        self.history: list = list(_runs or [])
        self._life = RunLifecycle(self)  # what is on screen, and each run's start, hold and end
        self._runner = Runner(self._life.execute)
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdiffuse-decode")
        self._start_source: Any = None  # image to image: what start_from() was given
        self._kept = KeptRuns()  # frames (an LRU), thumbnails and labels of the runs
        self._made_by = model_swap.MadeBy()  # which model made the runs of a swapped-out model
        self._closed = False
        values = model_defaults(self.pipe, defaults) if self.pipe is not None else saved_defaults(self.history, defaults)
        super().__init__(_uid=uuid.uuid4().hex, view=view, preview=preview, export_dir=os.getcwd(), mp4=mp4_available(),
                         **control_traits(self.pipe), **pag_traits(self.pipe), **mask_traits(self.pipe),
                         **workshop_state(self.pipe), **capabilities_state(self.pipe), **values,
                         **self.attention_traits(self.pipe))
        try:
            self._requests = BrowserRequests(self, pool=self._decoder, ack=self._life.ack, show_error=self._show_error,
                                             clear_error=self._clear_error)
            self.on_msg(self._requests.on_msg)
            self._control_defaults(control)
            if self.history:
                self._life.refresh_runs()
                self.load_run(0)
        except Exception:
            self.close()  # a refused default (any failure from here) leaves no widget and no threads behind
            raise

    @classmethod
    def from_files(cls, paths: Any, pipe: Any = None, **defaults: Any) -> Explorer:
        """Workshop mode: an Explorer over saved trajectories (.nbd files).

        Without `pipe` no model is needed: scrub, what-if guidance (from the stored eps pairs),
        compare and export work; Generate and Branch are off. With the pipeline that made the
        runs, frames are also decoded by its VAE and branching works.
        """
        pipe, runs = load_runs(paths, pipe)
        return cls(pipe, _runs=runs, **defaults)

    # --- public API -------------------------------------------------------------------
    def generate(self, prompt: str | None = None, *, negative_prompt: str | None = None, seed: int | None = None,
                 steps: int | None = None, guidance: Any = None, scheduler: str | None = None,
                 height: int | None = None, width: int | None = None, background: bool = True, image: Any = None,
                 strength: float | None = None, pipe_kwargs: dict | None = None, mask_image: Any = None,
                 **control: Any) -> None:
        """Check the parameters (ValueError/TypeError at once), then run; a running run is replaced.

        Parameters left None take the controls' current values; the controls then show what runs.
        guidance: a number, or anything nbd.trace accepts (per-step sequence, callable step -> number).
        image, strength: image to image from this picture (PIL image, array, file path or a
        SketchPad); without them, the start picture set by start_from() when "use" is on.
        mask_image: an inpainting pipeline's mask for `image` (without image: the one start_from() set).
        background=False runs in the calling thread and returns when done (Colab, scripts).
        pipe_kwargs: the pipeline's own keywords, as nbd.trace takes them.
        control: control_image, control_scale, control_start, control_end, control_guess_mode, control_mode (as
        nbd.trace takes them); without them, the picture set by control_from() / control_pad() and the
        control sliders (control_panel.py).
        """
        if self._closed:
            raise RuntimeError("this Explorer was closed; create a new one")
        need_pipe(self.pipe, "generate")
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
            if mask_image is not None:
                params["mask_image"] = mask_image
            elif image is self._start_source:  # the start picture's mask (mask_panel.py)
                params.update(self._mask_for_run(params["image"]))
            if image is self._start_source:  # a SketchPad: show the drawing this run starts from
                self.start_thumb = masked_thumbnail(params["image"], params.get("mask_image"))
            params["strength"] = self.strength if strength is None else strength
            if self.size_options and height is None and width is None:
                params["height"] = params["width"] = None  # the picture's own size
        elif strength is not None or mask_image is not None:
            given = f"strength={strength!r}" if strength is not None else "mask_image"
            raise ValueError(f"{given} needs a start picture: pass image=... or call ex.start_from(...)")
        pipe_kwargs = generate_pag(self, pipe_kwargs)  # a PAG pipeline: the PAG slider's scale (pag_panel.py)
        if pipe_kwargs is not None:
            params["pipe_kwargs"] = pipe_kwargs
        unknown = sorted(set(control) - set(CONTROL_ARGS))
        if unknown:
            raise TypeError(f"generate() got unknown argument(s) {', '.join(unknown)}")
        params.update(self.control_params(control, params))
        control = RunControl()
        live = LiveRun(self, background, self._live_preview())
        run = prepare(self.pipe, control=control, on_step=live.on_step, attention=self.attention,
                      **dict(params, scheduler=sampler_arg(self.pipe, params["scheduler"])))
        job = Job(run, control, background, context=live)
        values = controls_of_run(run, params["scheduler"], bool(self.size_options), self.guidance_max)
        values.update(self.controls_of_control(run))
        self._set_quietly(values)  # programmatic trait writes must not steer the run being replaced
        self._runner.submit(job)

    def start_from(self, source: Any = None, strength: float | None = None, mask: Any = None) -> None:
        """Start the next runs from a picture (PIL image, uint8 array, file path, image bytes or a
        SketchPad, read at each Generate); None goes back to starting from noise. mask: an inpainting
        pipeline's mask of the picture's size (white repaints, black keeps; mask_panel.py)."""
        if strength is not None:
            self.strength = check_strength(strength)
        if source is None:
            self._start_source = self._start_mask = None
            self.start_thumb, self.use_picture, self.mask_share = b"", False, 0.0
            return
        need_pipe(self.pipe, "image to image (start_from)")
        picture = start_picture.picture_of(source, "source")
        self._set_mask(mask, picture)  # checked before anything changes; shows the thumbnail
        self._start_source = source if hasattr(source, "image") and not isinstance(source, Image.Image) else picture
        self.use_picture = True

    def sketch_pad(self, **options: Any) -> Any:
        """A SketchPad the next runs start from (show it, draw, press Generate). options: SketchPad's."""
        pad = SketchPad(**start_picture.pad_size(self.pipe, options))
        self.start_from(pad)
        return pad

    def _live_preview(self) -> str:
        """`preview`, checked against the pipeline: what frames.frame_decoder chooses from for the next run."""
        if self.preview == "tiny" and (self.pipe is None or tiny_decoder(self.pipe) is None):
            raise ValueError("preview='tiny' needs a tiny decoder for this pipeline: "
                             "nbd.set_tiny_decoder(pipe, AutoencoderTiny...) first, or preview='auto' or 'approx'")
        return self.preview

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
        was = model_swap.defaults_of(old)  # the old model's defaults: what the user left as is
        if self._runner.busy:
            self.stop()
            if not self._runner.wait(SWAP_STOP_TIMEOUT):
                raise RuntimeError(f"the running run did not stop within {SWAP_STOP_TIMEOUT:g} s, so the model was "
                                   "not swapped; stop it (ex.stop()) and try again")
        values = model_swap.controls_after(was, {key: getattr(self, key) for key in model_swap.CONTROL_KEYS}, new)
        self.pipe = new
        if old is not None and old is not new:
            self._made_by.let_go_of(self.history, old)
        shown = self.shown
        with self._sync_lock, self._quietly(), self.hold_sync():
            self._assign(values)
            self._assign(workshop_state(new))
            self._assign(capabilities_state(shown if shown is not None else new))
            self._assign(control_traits(new))
            self._assign(pag_traits(new))
            self._assign(mask_traits(new))
            self._assign(self.attention_traits(new))
            self.error = self.error_details = ""

    # --- exploring: what-if, branches, the run tree, compare, exports ----------------------
    @property
    def shown(self) -> Any:
        """The Trajectory on screen: the running one, or the run last loaded (load_run) or finished."""
        if self._life.shown_traj is not None:
            return self._life.shown_traj
        live = self._life.live
        return live.traj if live is not None and live.traj is not None else self.trajectory

    def shown_step(self) -> int:
        """The step the scrubber shows (the last one while it follows the run)."""
        traj = self.shown
        if traj is None or len(traj) == 0:
            raise ValueError("no run to show yet: generate one, or load saved runs with Explorer.from_files")
        return len(traj) - 1 if self.frame < 0 or self.frame >= len(traj) else self.frame

    def what_if(self, guidance: float, k: int | None = None, decoder: str = "approx",
                pag_scale: float | None = None) -> Any:
        """The x0 of step k (default: the shown step) re-weighed with `guidance` (and a PAG run's `pag_scale`):
        no model call. -> PIL.Image"""
        w = check_guidance_value(guidance)
        check_choice("decoder", decoder, ("approx", "full"))
        traj = self.shown
        k = self.shown_step() if k is None else k
        return traj.guided_image(k, w, decoder=decoder, pag_scale=pag_scale)

    def branch(self, at: int | None = None, *, background: bool = True, **changes: Any) -> None:
        """Continue the shown run from step `at` (default: the shown step) with `changes`.

        changes: prompt, negative_prompt, guidance, scheduler, steps, seed (as nbd.branch takes them).
        Bad values raise at once; the branch then runs like a generated run and joins the run tree.
        """
        need_pipe(self.pipe, "branch")
        if not isinstance(background, bool):
            raise TypeError(f"background must be True or False, got {background!r}")
        parent = self.shown
        at = self.shown_step() if at is None else at
        changes = run_tree.check_branch(self.pipe, parent, at, changes)
        notice = self._made_by.model_change(parent, self.pipe, at)  # a run of a swapped-out model (set_pipeline)
        control = RunControl()
        live = LiveRun(self, background, self._live_preview())
        live.prefix = self._frames_of(parent, upto=at + 1)[:2]
        run = run_tree.BranchRun(self.pipe, parent, at, changes, control, noting(live.on_step, notice))
        self._set_quietly(controls_of_branch(parent, at, changes, self.guidance))
        self._runner.submit(Job(run, control, background, context=live))

    def continue_from(self, guidance: float, k: int | None = None, background: bool = True,
                      pag_scale: float | None = None) -> None:
        """What-if made real: branch the shown run from step k with `guidance` (and a PAG run's `pag_scale`, the
        PAG of step k as the what-if takes it; None: its own) for the rest. A run with an adaptive PAG scale asks
        what gives `pag_scale` at step k, which then falls as the run's did."""
        k = self.shown_step() if k is None else k
        pag = continue_pag(self.shown, k, pag_scale)
        self.branch(k, guidance=check_guidance_value(guidance), background=background, **pag)

    def load_run(self, which: Any) -> Any:
        """Show run `which` (history index, run id, or Trajectory) in the Explorer; returns it."""
        traj = run_tree.find_run(self.history, which)
        if self._runner.busy:
            self.stop()
            self._runner.wait()
        problem = self._life.show(traj)
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
        comparison, state = compare_view.compare_state(ta, tb, self._kept.label(ta), self._kept.label(tb), self._frames_of,
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
        number = int(self._kept.label(traj)[1:])
        target = export_path(traj, kind, path, self.export_dir, step, view, number, start, stop)
        write_export(traj, kind, target, step=step, view=view, start=start, stop=stop, fps=fps, decoder=decoder,
                     size=size)
        with self._sync_lock:
            shown = str(target)
            self.export_files = [shown] + [f for f in self.export_files if f != shown][: EXPORTS_SHOWN - 1]
        return target

    @property
    def trajectory(self) -> Any:
        """The latest run's Trajectory (live while it runs), or None before the first run."""
        return self.history[-1] if self.history else None

    def close(self) -> None:
        """Stop the run, end this widget's threads and close it in the browser."""
        if getattr(self, "_closed", True) is False:
            self._closed = True
            # an Explorer whose construction failed half way (a refused default) has only some of its parts
            for part in (getattr(self, "_runner", None), getattr(self, "_requests", None)):
                if part is not None:
                    part.close()
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

    def _frames_of(self, traj: Any, upto: int | None = None) -> tuple[list, list, str]:
        """A run's per-step frames (x0, xt) and what drew them: kept_runs.KeptRuns.frames_of."""
        return self._kept.frames_of(traj, self.preview, upto)

    @property
    def _frames(self) -> run_tree.FrameCache:
        """Run id -> the run's lossy frames per view (for loading, compare): an LRU of FRAME_CACHE_RUNS runs."""
        return self._kept.frames

    @property
    def _thumbs(self) -> dict[tuple[str, int], bytes]:
        """(run id, steps) -> JPEG, for the runs in history."""
        return self._kept.thumbs
