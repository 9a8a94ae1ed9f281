"""What the Explorer's page asks of the kernel: its custom messages, and the decodes they start.

Kept apart from the widget class because it is the one place where the browser's requests arrive.
Its interface is explicit: the Explorer's public API (the methods the buttons stand for, `shown`,
`shown_step`, `run_id`, `status`, the controls' traits, `export_files`, `send`), and three callables
it is given: `ack` (a live frame was painted), `show_error` (a failure to the widget's error box) and
`clear_error`; plus `pool`, the thread pool for decodes off the kernel's main thread.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...core.pag import MAX_PAG_SCALE, check_pag_value
from ...core.pipe_attrs import tiny_decoder
from ...core.capabilities import run_reason
from ...core.validate import check_choice, check_guidance_value
from ..frames import VIEWS, full_frames
from .. import compare_view
from ..export_files import read_for_download
from . import run_tree
from .decision_view import show_decision_curve
from .pag_panel import branch_pag
from .control_panel import control_handlers

BRANCH_CONTROLS = ("prompt", "negative_prompt", "seed", "scheduler", "steps", "guidance")


class BrowserRequests:
    """The Explorer's handlers of the page's messages (ack, generate, scrub, what-if, export, download, ...)."""

    def __init__(self, explorer: Any, *, pool: Any, ack: Callable[[Any, Any], None],
                 show_error: Callable[[BaseException], None], clear_error: Callable[[], None]):
        self.explorer, self.pool = explorer, pool
        self.ack, self.show_error, self.clear_error = ack, show_error, clear_error
        self.scrub_target: tuple[str, int] | None = None  # newest scrub request: older ones are not drawn
        # the decision curve runs the model for seconds (minutes on a big one on a CPU): on its own thread,
        # so scrubbed frames, what-ifs and exports on `pool` do not wait behind it
        self.curves: ThreadPoolExecutor | None = None
        self._closed = False
        self.whatif_target: tuple | None = None  # newest what-if request

    def on_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        # Runs in the kernel's main thread: anything raised here would reach only a server
        # log, so every failure goes to the widget's error box instead.
        try:
            kind = content.get("type") if isinstance(content, dict) else None
            handler = self._handlers().get(kind)
            if handler is not None:
                handler(content, buffers)
        except Exception as exc:
            self.show_error(exc)

    def _handlers(self) -> dict[str, Callable[[dict, list], Any]]:
        ex = self.explorer
        return {
            "ack": lambda c, b: self.ack(c.get("run"), c.get("seq")),
            "generate": lambda c, b: ex.generate(),
            "stop": lambda c, b: ex.stop(),
            "pause": lambda c, b: ex.pause(),
            "resume": lambda c, b: ex.resume(),
            "step": lambda c, b: ex.step(),
            "scrub": lambda c, b: self._scrub(c.get("run"), c.get("k")),
            "whatif": lambda c, b: self._what_if_request(c),
            "continue": lambda c, b: ex.continue_from(c.get("g"), _step_of(c), pag_scale=c.get("p")),
            "branch": lambda c, b: self._branch(c),
            "load_run": lambda c, b: ex.load_run(c.get("id")),
            "compare": lambda c, b: ex.compare(c.get("a"), c.get("b")),
            "compare_close": lambda c, b: ex.close_compare(),
            "export": lambda c, b: self._later(self._export_request, dict(c)),
            "download": lambda c, b: self._later(self._send_download, c.get("path"), c.get("req")),
            "upload": lambda c, b: ex.start_from(bytes(b[0]) if b else b""),
            "clear_picture": lambda c, b: ex.start_from(None),
            "upload_mask": lambda c, b: ex.mask_from(bytes(b[0]) if b else b""),
            "decision_curve": lambda c, b: self._decision_curve(),
            **control_handlers(ex, _step_of),
        }

    def _branch(self, content: dict) -> None:
        """"Branch here": the shown run from step k, with each control that differs from it."""
        ex = self.explorer
        k = _step_of(content)
        k = ex.shown_step() if k is None else k
        controls = {key: getattr(ex, key) for key in BRANCH_CONTROLS}
        ex.branch(k, **run_tree.changes_from_controls(ex.shown, k, controls), **ex.branch_control_changes(ex.shown, k),
                  **branch_pag(ex, ex.shown, k))

    def _later(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # decoder shut down: the widget is closing
            self.pool.submit(self._guarded, fn, *args)

    def _decision_curve(self) -> None:
        if self._closed:
            return
        if self.curves is None:
            self.curves = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdiffuse-decision")
        with contextlib.suppress(RuntimeError):  # shut down: the widget is closing
            self.curves.submit(self._guarded, show_decision_curve, self.explorer)

    def close(self) -> None:
        """End the decision curve's thread (a curve being made finishes first)."""
        self._closed = True
        if self.curves is not None:
            self.curves.shutdown(wait=True, cancel_futures=True)

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self.show_error(exc)

    def _export_request(self, content: dict) -> None:
        options = {key: content[key] for key in ("k", "view", "start", "stop", "fps") if content.get(key) is not None}
        self.explorer.export(content.get("kind"), **options)
        self.clear_error()

    def _send_download(self, path: Any, req: Any) -> None:
        """An exported file's bytes to the page, which saves them as a download (see exports.js saveBytes)."""
        name, data = read_for_download(path, list(self.explorer.export_files))
        self.explorer.send({"type": "download", "req": req, "path": path, "name": name}, [data])

    def _what_if_request(self, content: dict) -> None:
        ex = self.explorer
        traj, run = ex.shown, ex.run_id
        k, decoder = _step_of(content), content.get("decoder", "approx")
        if traj is None or content.get("run") != run or ex.status in ("running", "pausing"):
            return
        if not traj.capabilities["what_if"]:  # guidance is a model input, or a pipeline's own loop (the run says why)
            raise ValueError(traj.params.get("capabilities_reason") or run_reason(traj.params, "a what-if"))
        k = ex.shown_step() if k is None else k
        w = check_guidance_value(content.get("g"), "what-if guidance")
        p = content.get("p")  # a PAG run's what-if PAG scale (None: the step's own)
        p = None if p is None else check_pag_value("what-if pag_scale", p, MAX_PAG_SCALE)
        check_choice("decoder", decoder, ("approx", "full"))
        if decoder == "full" and traj.pipe is None:
            return  # workshop mode without the model: the approx frame is the best there is
        if decoder == "approx" and traj.pipe is not None and tiny_decoder(traj.pipe) is not None:
            decoder = "tiny"  # as fast to drag and nearly the VAE's picture
        target = (run, k, w, decoder, p)
        self.whatif_target = target
        self._later(self._send_what_if, traj, target)

    def _send_what_if(self, traj: Any, target: tuple) -> None:
        if self.whatif_target != target:
            return  # dragged on meanwhile: only the newest what-if is worth drawing
        run, k, w, decoder, p = target
        frame = compare_view.what_if_frame(traj, k, w, decoder, p)
        self.explorer.send({"type": "whatif", "run": run, "k": k, "g": w, "p": p, "decoder": decoder}, [frame])

    def _scrub(self, run: Any, k: Any) -> None:
        ex = self.explorer
        traj = ex.shown
        if (traj is None or run != ex.run_id or ex.status in ("running", "pausing") or not isinstance(k, int)
                or not 0 <= k < len(traj) or traj.pipe is None):
            return
        self.scrub_target = (run, k)
        with contextlib.suppress(RuntimeError):  # decoder shut down: the widget is closing
            self.pool.submit(self._send_full, traj, run, k)

    def _send_full(self, traj: Any, run: str, k: int) -> None:
        if self.scrub_target != (run, k):
            return  # the user has moved on; newest request wins here too
        try:
            frames = full_frames(traj, k)
        except Exception as exc:
            self.show_error(exc)
            return
        self.explorer.send({"type": "full", "run": run, "k": k, "views": list(VIEWS)}, frames)


def _step_of(content: dict) -> int | None:
    k = content.get("k")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be a step index (int), got {k!r}")
    return k
