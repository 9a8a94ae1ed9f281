"""A stand-in for the browser side of a widget: for tests, benchmarks and scripts without Jupyter.

It takes the place of the widget's comm, keeps the state the browser would hold, records every
message with its size and time, and acknowledges live frames the way explorer.js does (from
another thread, after `ack_delay` seconds), so pacing runs as it does in a notebook.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from typing import Any


class HeadlessFrontend:
    """Attach to a widget: `fe = HeadlessFrontend(ex)`; then `fe.state`, `fe.frames`, `fe.click("stop")`."""

    def __init__(self, widget: Any, ack: bool = True, ack_delay: float = 0.0):
        self.widget, self.ack, self.ack_delay = widget, ack, ack_delay
        self.state: dict[str, Any] = {}
        self.frames: list[dict] = []  # live frame messages as received (content, with "bytes" added)
        self.customs: list[tuple[dict, list[bytes]]] = []
        self.log: list[tuple[float, str, int]] = []  # (time, "update" | "custom", bytes incl. buffers)
        self.max_unacked = 0
        self._unacked: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._acks: queue.Queue = queue.Queue()
        self._acker: threading.Thread | None = None
        if ack:
            self._acker = threading.Thread(target=self._ack_loop, name="headless-acks", daemon=True)
            self._acker.start()
        widget.comm = _Comm(self)
        self.state.update(widget.get_state())

    # --- the browser's side of the protocol ------------------------------------------------
    def receive(self, data: dict, buffers: list | None) -> None:
        buffers = [bytes(b) for b in (buffers or [])]
        size = len(repr(data)) + sum(len(b) for b in buffers)
        method = data.get("method")
        if method not in ("update", "custom"):
            return  # echo_update: the browser's own change coming back
        with self._lock:
            if method == "update":
                state = dict(data.get("state", {}))
                for path, buf in zip(data.get("buffer_paths", []), buffers):
                    _put(state, path, buf)
                self.state.update(state)
                self.log.append((time.perf_counter(), "update", size))
                return
            content = data.get("content", {})
            self.customs.append((content, buffers))
            self.log.append((time.perf_counter(), "custom", size))
            if content.get("type") == "frame":
                self.frames.append(dict(content, bytes=sum(len(b) for b in buffers)))
                key = (content["run"], content["seq"])
                self._unacked.add(key)
                self.max_unacked = max(self.max_unacked, len(self._unacked))
                if self.ack:
                    self._acks.put(key)

    def send(self, content: dict, buffers: list | None = None) -> None:
        """A custom message from the browser (e.g. {"type": "generate"}), with binary buffers (uploads)."""
        self.widget._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                                 "buffers": list(buffers or [])})

    def click(self, button: str) -> None:
        self.send({"type": button})

    def set(self, **state: Any) -> None:
        """The user changed controls: the browser sends their new values."""
        self.state.update(state)
        self.widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                                 "buffers": []})

    # --- figures -----------------------------------------------------------------------------
    def totals(self, since: float = 0.0) -> dict[str, float]:
        with self._lock:
            rows = [row for row in self.log if row[0] >= since]
        return {"messages": len(rows), "bytes": sum(r[2] for r in rows),
                "frames": sum(1 for r in rows if r[1] == "custom")}

    def close(self) -> None:
        if self._acker is not None:
            self._acks.put(None)
            self._acker.join()
            self._acker = None

    def _ack_loop(self) -> None:
        while True:
            key = self._acks.get()
            if key is None:
                return
            if self.ack_delay:
                time.sleep(self.ack_delay)
            with self._lock:
                self._unacked.discard(key)
            self.send({"type": "ack", "run": key[0], "seq": key[1]})


class _Comm:
    """Just enough of ipykernel's Comm for ipywidgets to talk through."""

    def __init__(self, frontend: HeadlessFrontend):
        self.frontend = frontend
        self.comm_id = uuid.uuid4().hex
        self.kernel = True  # ipywidgets sends only through a comm that has a kernel
        self._callback = None

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.frontend.receive(data, buffers)

    def on_msg(self, callback: Any) -> None:
        self._callback = callback

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.frontend.close()


def _put(state: dict, path: list, buf: bytes) -> None:
    target: Any = state
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = buf
