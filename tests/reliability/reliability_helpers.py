"""Helpers shared by the reliability tests (a uniquely named module: conftest names clash across folders)."""
from __future__ import annotations

import threading

import polling
from polling import new_threads, started  # noqa: F401 (the reliability tests import them from here)

WAIT = 120  # s for any wait: generous on a loaded 2-core machine; a failure ends the test, never hangs it


def wait_for(condition, timeout=WAIT, what="condition"):
    """Poll until `condition()` is true; fail (never hang) after `timeout` seconds. Not a timed assert."""
    return polling.wait_for(condition, timeout, what, interval=0.005)


class UNetFault:
    """Wraps the pipeline's real UNet forward: `action()` runs before call number `at` (1-based).

    Used to raise an exception or a KeyboardInterrupt inside the model at a chosen step; with CFG
    the tiny pipeline's UNet runs once per step (cond and uncond in one batch).
    """

    def __init__(self, pipe, monkeypatch, at, action):
        self.calls = 0
        self.at, self.action = at, action
        self.fired = threading.Event()
        forward = pipe.unet.forward

        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                self.fired.set()
                self.action()
            return forward(*args, **kwargs)

        monkeypatch.setattr(pipe.unet, "forward", wrapped)
