"""One Explorer run as the browser sees it while it goes: its frame stream, pacer and progress figures.

No widget class here: a LiveRun only needs the Explorer's `history` list and `send(content, buffers)`.
"""
from __future__ import annotations

import base64
import uuid
from typing import Any

from ..core.overlay_maps import live_guidance_map, live_word_maps
from .frames import FrameStream
from .pacer import ACK_TIMEOUT, Pacer
from .run_clock import RunClock

FOREGROUND_ACK_TIMEOUT = 0.1  # s; a foreground run blocks the kernel, so acks cannot arrive: pace by time


class LiveRun:
    """What one run streams to the browser: its frame stream, pacer and progress figures."""

    def __init__(self, explorer: Any, background: bool, preview: str = "auto"):
        self.explorer, self.preview, self.background = explorer, preview, background
        self.run_id = uuid.uuid4().hex[:12]
        self.traj: Any = None
        self.stream: FrameStream | None = None
        self.adopted = False
        self.prefix: tuple[list, list] | None = None  # a branch's inherited frames
        self.pacer = Pacer(self._send, ack_timeout=ACK_TIMEOUT if background else FOREGROUND_ACK_TIMEOUT)
        self.clock = RunClock()  # the progress line's it/s and seconds: wall time, pauses left out
        self.overlay_seen: dict = {}  # live word maps: each word's largest value so far (overlay_maps)
        self.guidance_seen: dict = {}  # live guidance maps: the largest value so far

    def on_step(self, traj: Any, step: Any) -> None:
        # Per step the denoising thread only hands the step on: the frame stream decodes and sends it.
        self.clock.step()
        if self.stream is None:
            self.adopt(traj)
            # background runs make their frames in the stream's own thread; foreground ones in this one (Colab)
            self.stream = FrameStream(traj, self.pacer, self.message, preview=self.preview, worker=self.background)
        self.stream.push(step.index)

    def adopt(self, traj: Any) -> None:
        if not self.adopted:
            self.adopted = True
            self.traj = traj
            self.explorer.history.append(traj)

    def message(self, k: int) -> dict:
        traj = self.traj
        message = {"type": "frame", "run": self.run_id, "k": k, "n": len(traj), "total": traj.total_steps,
                   "its": self.its(), "g": guidance_segments(traj.guidances)}
        steps = traj.steps
        if traj.params.get("control") and any(s.control_strength is not None for s in steps):
            # a ControlNet run in nbdiffuse's loop: its strength per step, for the strip (control.js); a pipeline
            # that runs its own loop shows none
            message["cs"] = [round(float(s.control_strength or 0.0), 4) for s in steps]
        words = live_word_maps(traj, k, self.overlay_seen)
        if words is not None:  # attention maps: this step's, for the overlay while the run goes (overlays.js)
            message.update(ow=words["words"], og=words["grid"], os=words["scale"],
                           om=base64.b64encode(words["maps"]).decode("ascii"))
        apart = live_guidance_map(traj, k, self.guidance_seen)
        if apart is not None:  # the guidance map, for the overlay while the run goes ("": none at this step)
            message.update(og=apart["grid"], gs=apart["scale"], gm=base64.b64encode(apart["map"]).decode("ascii"))
        return message

    def its(self) -> float:
        """Steps this run made per second of wall time (RunClock): consistent with seconds()."""
        return round(self.clock.rate(), 2)

    def seconds(self) -> float:
        return round(self.clock.seconds(), 3)

    def _send(self, content: dict, buffers: list) -> None:
        self.explorer.send(content, buffers)


def guidance_segments(guidances: list[float]) -> list[list[float]]:
    """[[first step, guidance], ...] where guidance changes: a few numbers instead of one per step."""
    segments: list[list[float]] = []
    for k, w in enumerate(guidances):
        if not segments or segments[-1][1] != w:
            segments.append([k, w])
    return segments


def noting(on_step: Any, notice: str | None) -> Any:
    """on_step that also adds `notice` to the run's notices (params["notices"], kept in .nbd files)."""
    if notice is None:
        return on_step

    def step(traj: Any, s: Any) -> None:
        notices = traj.params.setdefault("notices", [])
        if notice not in notices:
            notices.append(notice)
        on_step(traj, s)
    return step
