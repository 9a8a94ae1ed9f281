"""The Explorer's synced state: every trait the browser and the kernel share, and their checks.

The kernel side keeps the controls' state in traits and runs generation in a worker thread
(widget events are only handled while the cell is idle). Frames travel two ways:

- live, as paced custom messages (newest frame wins, the browser acks, at most two in flight),
  so a fast GPU never pushes Jupyter past its 1000 messages/s limit;
- at the end of a run (and on pause) as widget state: one frame per step and view in
  `frames_x0` / `frames_xt` (frames.encode_frame: raw RGB up to 32 x 32 pixels, else JPEG),
  plus the full-VAE frame of the shown step in `full_frames` (lossless WebP). State is what a
  saved notebook keeps, so scrubbing works later without a kernel.

The widget class (widget.Explorer) adds the public API on top of this state.
"""
from __future__ import annotations

import contextlib
import pathlib
import threading
import traceback
from typing import Any

import anywidget
import traitlets as t

from ...core.img2img import DEFAULT_STRENGTH
from ...core.capabilities import CAPABILITIES
from ...core.families import is_generic
from ...core.validate import MAX_SEED, MAX_STEPS, check_choice
from ..assets import module, stylesheet
from ..plain_words import describe_error
from .trait_checks import ExplorerTraitChecks

_HERE = pathlib.Path(__file__).resolve().parent
# The front end's parts, in the order they are concatenated before explorer.js (render, initialize).
JS_PARTS = ("store", "kernel", "fields", "controls", "control", "stage", "decision", "overlays", "exports", "runs",
            "explore")
PREVIEWS = ("auto", "approx", "tiny")  # Explorer.preview


class ExplorerState(ExplorerTraitChecks, anywidget.AnyWidget):  # trait_checks: every setting checked when set
    """The Explorer's traits (synced with the browser), the front end that shows them, and how the kernel writes them.

    Writes from several threads (the run's worker, the decode pool, the kernel's main thread) go under
    `_sync_lock`; a batch of them goes out as one message with `hold_sync()`; writes the kernel makes
    to show a run (not the user's) go through `_quietly()`, so that observers do not take them for the user's.
    """

    def __init__(self, **traits: Any):
        self._sync_lock = threading.RLock()
        self._quiet = 0
        super().__init__(**traits)

    _esm = module(_HERE / "explorer.js", *(_HERE / f"{part}.js" for part in JS_PARTS))
    _css = stylesheet(_HERE / "explorer.css")

    _uid = t.Unicode("").tag(sync=True)

    # Controls: the browser writes them, generate() reads them.
    prompt = t.Unicode("").tag(sync=True)
    negative_prompt = t.Unicode("").tag(sync=True)
    seed = t.Int(0).tag(sync=True)
    steps = t.Int(30).tag(sync=True)
    guidance = t.Float(7.5).tag(sync=True)
    guidance_max = t.Float(15.0).tag(sync=True)
    # Perturbed-attention guidance (pag_panel.py): a PAG pipeline's slider, and the shown run's PAG per step.
    pag_available = t.Bool(False).tag(sync=True)
    pag_scale = t.Float(3.0).tag(sync=True)
    pag_used = t.List(t.Float()).tag(sync=True)
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
    # Overlays (core/overlay_maps.py, overlays.js): Generate records attention maps when `attention` is on; the shown run's
    # maps per step and word, and its guidance maps, as bytes over the latent grid.
    attention = t.Bool(False).tag(sync=True)
    attention_available = t.Bool(True).tag(sync=True)  # the pipeline's layers can be read (attention_traits)
    overlay_words = t.List(t.Unicode()).tag(sync=True)
    overlay_maps = t.List(t.Bytes()).tag(sync=True)  # per step: words x h x w bytes
    overlay_scale = t.List(t.Float()).tag(sync=True)  # per word: the value byte 255 stands for
    overlay_grid = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)  # [h, w]
    guidance_maps = t.List(t.Bytes()).tag(sync=True)  # per step: h x w bytes
    guidance_scale = t.Float(0.0).tag(sync=True)
    overlay_note = t.Unicode("").tag(sync=True)
    mask_map = t.Bytes(b"").tag(sync=True)  # an inpainting run's mask over mask_grid (overlay_maps.mask_map)
    mask_grid = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)
    decision = t.Dict().tag(sync=True)  # the shown run's decision curve, on demand (decision_view.py)
    decision_status = t.Unicode("").tag(sync=True)  # "", "running", "done"

    @staticmethod
    def attention_traits(pipe: Any) -> dict[str, Any]:
        """Whether Generate can record attention maps with `pipe`: a family's pipeline, whose layers nbdiffuse's
        loop reads; a pipeline that runs its own loop cannot, and the box goes off."""
        if pipe is not None and not is_generic(pipe):
            return {"attention_available": True}
        return {"attention_available": False, "attention": False}

    @t.validate("preview")
    def _check_preview(self, proposal: Any) -> str:
        return check_choice("preview", proposal["value"], PREVIEWS)

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

    def _clear_error(self) -> None:
        with self._sync_lock:
            self.error = self.error_details = ""

    def _set_quietly(self, values: dict[str, Any]) -> None:
        with self._quietly():
            for name, value in values.items():
                self.set_trait(name, value)

    def _assign(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)
