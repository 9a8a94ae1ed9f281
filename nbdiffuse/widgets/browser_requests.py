"""What the Explorer's page asks of the kernel: its custom messages, and the decodes they start.

A mixin of the Explorer (nbdiffuse.widgets.explorer), kept apart because it is the one place where
the browser's requests arrive. It uses the Explorer's state and methods: `_live`, `_decoder` (the
thread pool for decodes off the kernel's main thread), `shown`, `shown_step`, `run_id`, `status`,
`_sync_lock`, `_show_error` and the public API the buttons stand for.
"""
from __future__ import annotations

import contextlib
from typing import Any

from ..core.loading import tiny_decoder
from ..core.trajectory import xt_only_reason
from ..core.validate import check_choice, check_guidance_value
from ..frames import VIEWS, full_frames
from . import compare_view, history as run_tree
from .export_files import read_for_download


class BrowserRequests:
    """The Explorer's handlers of the page's messages (ack, generate, scrub, what-if, export, download, ...)."""

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
            elif kind == "whatif":
                self._what_if_request(content)
            elif kind == "continue":
                self.continue_from(content.get("g"), _step_of(content))
            elif kind == "branch":
                k = _step_of(content)
                k = self.shown_step() if k is None else k
                controls = {key: getattr(self, key) for key in ("prompt", "negative_prompt", "seed", "scheduler",
                                                                "steps", "guidance")}
                self.branch(k, **run_tree.changes_from_controls(self.shown, k, controls))
            elif kind == "load_run":
                self.load_run(content.get("id"))
            elif kind == "compare":
                self.compare(content.get("a"), content.get("b"))
            elif kind == "compare_close":
                self.close_compare()
            elif kind == "export":
                self._later(self._export_request, dict(content))
            elif kind == "download":
                self._later(self._send_download, content.get("path"), content.get("req"))
            elif kind == "upload":
                self.start_from(bytes(buffers[0]) if buffers else b"")
            elif kind == "clear_picture":
                self.start_from(None)
        except Exception as exc:
            self._show_error(exc)

    def _later(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # decoder shut down: the widget is closing
            self._decoder.submit(self._guarded, fn, *args)

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._show_error(exc)

    def _export_request(self, content: dict) -> None:
        options = {key: content[key] for key in ("k", "view", "start", "stop", "fps") if content.get(key) is not None}
        self.export(content.get("kind"), **options)
        with self._sync_lock:
            self.error = self.error_details = ""

    def _send_download(self, path: Any, req: Any) -> None:
        """An exported file's bytes to the page, which saves them as a download (see explorer.js saveBytes)."""
        name, data = read_for_download(path, list(self.export_files))
        self.send({"type": "download", "req": req, "path": path, "name": name}, [data])

    def _what_if_request(self, content: dict) -> None:
        traj, run = self.shown, self.run_id
        k, decoder = _step_of(content), content.get("decoder", "approx")
        if traj is None or content.get("run") != run or self.status in ("running", "pausing"):
            return
        if not traj.capabilities["what_if"]:
            raise ValueError(xt_only_reason(traj.params.get("pipeline"), "a what-if", hint=""))
        k = self.shown_step() if k is None else k
        w = check_guidance_value(content.get("g"), "what-if guidance")
        check_choice("decoder", decoder, ("approx", "full"))
        if decoder == "full" and traj.pipe is None:
            return  # workshop mode without the model: the approx frame is the best there is
        if decoder == "approx" and traj.pipe is not None and tiny_decoder(traj.pipe) is not None:
            decoder = "tiny"  # as fast to drag and nearly the VAE's picture
        target = (run, k, w, decoder)
        self._whatif_target = target
        self._later(self._send_what_if, traj, target)

    def _send_what_if(self, traj: Any, target: tuple) -> None:
        if self._whatif_target != target:
            return  # dragged on meanwhile: only the newest what-if is worth drawing
        run, k, w, decoder = target
        frame = compare_view.what_if_frame(traj, k, w, decoder)
        self.send({"type": "whatif", "run": run, "k": k, "g": w, "decoder": decoder}, [frame])

    def _scrub(self, run: Any, k: Any) -> None:
        traj = self.shown
        if (traj is None or run != self.run_id or self.status in ("running", "pausing") or not isinstance(k, int)
                or not 0 <= k < len(traj) or traj.pipe is None):
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


def _step_of(content: dict) -> int | None:
    k = content.get("k")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be a step index (int), got {k!r}")
    return k
