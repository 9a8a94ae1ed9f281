"""Pacing of live messages: send only the newest, with at most two unacknowledged by the browser.

No widget imports here. A Pacer only needs a `send(content, buffers)` function, so the same code
serves the Explorer, a headless frontend in tests and the benchmark.

Why pacing: the Jupyter server forwards at most 1000 iopub messages/s and silently drops the rest,
after which widget state stays out of sync for good. So a live stream sends only the newest frame
and lets the browser acknowledge each one, with at most two unacknowledged (jupyter_rfb's pattern).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

MAX_IN_FLIGHT = 2
ACK_TIMEOUT = 0.5  # s; an unacknowledged frame older than this counts as lost (no view, hidden tab, busy kernel)
# s between live frames. Each one is a decode (the tiny decoder's x0 and x_t of the embedded model:
# ~1.7 ms of a CPU thread, 6% of its 27 ms guided step), so a live view of every step of a fast run
# costs the run up to ~6% on a 2-core machine even from a thread of its own; at 12 a second the view
# still moves smoothly and the steps it skipped are made once, in batches, when the run holds or
# right after it ends (explorer/lifecycle.py, fill_skipped).
MIN_INTERVAL = 1 / 12

Send = Callable[[dict, list], None]

Message = Callable[[], "tuple[dict, list]"]


class Pacer:
    """Send only the newest message, at most `max_in_flight` awaiting the browser's ack.

    `offer(make)` replaces any message still waiting (newest wins); `make()` builds the message
    only when it is sent, so frames that are never sent are never encoded. `ack(seq)` frees a
    slot and sends what waits. Each message gets a `seq` that the browser echoes back; acks for
    unknown seqs (a second view of one widget, a late ack) are ignored. `min_interval` caps the
    rate (a display shows no more than ~60 frames/s, and each message costs the kernel time).
    """

    def __init__(self, send: Send, max_in_flight: int = MAX_IN_FLIGHT, ack_timeout: float = ACK_TIMEOUT,
                 min_interval: float = MIN_INTERVAL, clock: Callable[[], float] = time.monotonic):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if not ack_timeout > 0:
            raise ValueError(f"ack_timeout must be > 0 seconds, got {ack_timeout}")
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self._send, self.max_in_flight, self.ack_timeout = send, max_in_flight, ack_timeout
        self.min_interval, self._clock = min_interval, clock
        self._lock = threading.Lock()
        self._pending: Message | None = None
        self._in_flight: dict[int, float] = {}
        self._seq = 0
        self._last_sent = -math.inf
        self._closed = False
        self.sent = self.replaced = self.expired = self.bytes_sent = 0

    def offer(self, make: Message) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pending is not None:
                self.replaced += 1
            self._pending = make
            self._pump()

    def ack(self, seq: Any) -> None:
        with self._lock:
            if self._in_flight.pop(seq, None) is not None:
                self._pump()

    def pump(self) -> None:
        """Send what waits if a slot is free (or has timed out)."""
        with self._lock:
            self._pump()

    def close(self) -> None:
        """Drop what waits and send nothing more (the final state goes another way)."""
        with self._lock:
            self._closed = True
            self._pending = None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def waiting(self) -> bool:
        with self._lock:
            return self._pending is not None

    def _pump(self) -> None:
        if self._pending is None or self._closed:
            return
        now = self._clock()
        for seq, sent_at in list(self._in_flight.items()):
            if now - sent_at >= self.ack_timeout:
                del self._in_flight[seq]
                self.expired += 1
        if len(self._in_flight) >= self.max_in_flight or now - self._last_sent < self.min_interval:
            return
        make, self._pending = self._pending, None
        content, buffers = make()
        self._seq += 1
        self._in_flight[self._seq] = now
        self._last_sent = now
        self.sent += 1
        self.bytes_sent += sum(len(b) for b in buffers)
        # Sent under the lock so that close() means "nothing more goes out" without a race.
        self._send(dict(content, seq=self._seq), buffers)
