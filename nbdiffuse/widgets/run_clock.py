"""The time a run takes as its user sees it: wall time from Generate to its last step, pauses left out.

The Explorer's progress line shows `steps / seconds` of this clock, so its it/s and its "done in"
agree (a rate of the model's own step time, or of the last few steps, read as far faster than
the wall time the user watched). The time a run is held paused counts for neither.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class RunClock:
    """start() when the run starts, step() after each step it makes, hold()/release() around a pause."""

    def __init__(self, now: Callable[[], float] = time.perf_counter):
        self._now = now
        self._lock = threading.Lock()
        self._start: float | None = None
        self._last: float | None = None
        self._held = 0.0  # seconds held before the last step
        self._held_since: float | None = None
        self.steps = 0  # steps this run made (a branch's inherited steps are not among them)

    def start(self) -> None:
        with self._lock:
            if self._start is None:
                self._start = self._now()

    def step(self) -> None:
        with self._lock:
            now = self._now()
            if self._start is None:
                self._start = now
            self._end_hold(now)  # a step ran while we thought it held (step once): count from here
            self._last = now
            self.steps += 1

    def hold(self) -> None:
        with self._lock:
            if self._held_since is None:
                self._held_since = self._now()

    def release(self) -> None:
        with self._lock:
            self._end_hold(self._now())

    def _end_hold(self, now: float) -> None:
        """Count the time held so far (the lock is taken)."""
        if self._held_since is not None:
            self._held += now - self._held_since
            self._held_since = None

    def seconds(self) -> float:
        """Wall seconds from the start to the last step, less the time held paused; 0 before the first step."""
        with self._lock:
            if self._start is None or self._last is None:
                return 0.0
            return max(0.0, self._last - self._start - self._held)

    def rate(self) -> float:
        """Steps per second of seconds(): the it/s shown."""
        spent = self.seconds()
        return self.steps / spent if spent > 0 else 0.0
