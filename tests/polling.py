"""Waiting without hanging, shared by the widget and reliability tests (tests/ is on sys.path)."""
from __future__ import annotations

import threading
import time


def wait_for(condition, timeout=60.0, what="condition", interval=0.01):
    """Poll until `condition()` is true and return its value; fail (never hang) after `timeout` s. Not a timed assert."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def started(ex, steps=1):
    """True once the latest run has recorded `steps` steps."""
    return lambda: ex.trajectory is not None and len(ex.trajectory) >= steps


def hold(fe, ex=None, steps=1, timeout=60.0):
    """Press the Explorer's Pause (through a HeadlessFrontend `fe`) and wait until its run is held; given the
    Explorer `ex`, first wait until its run has recorded `steps` steps."""
    if ex is not None:
        wait_for(started(ex, steps), timeout, f"{steps} step(s)")
    fe.click("pause")
    wait_for(lambda: fe.state["status"] == "paused", timeout, "paused")


def new_threads(before, ignore=()):
    """Threads alive now that were not in `before` (names in `ignore` left out)."""
    return [th for th in threading.enumerate() if th not in before and th.is_alive() and th.name not in ignore]
