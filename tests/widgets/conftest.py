"""Fixtures for widget tests: one tiny real pipeline per session, an Explorer with a headless frontend."""
from __future__ import annotations

import threading
import time

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline()


@pytest.fixture
def explorer(pipe):
    """An Explorer wired to a HeadlessFrontend that acks frames like explorer.js; closed afterwards."""
    from nbdiffuse.widgets import Explorer
    from nbdiffuse.widgets.headless import HeadlessFrontend

    before = set(threading.enumerate())
    ex = Explorer(pipe, steps=8)
    fe = HeadlessFrontend(ex)
    yield ex, fe
    ex.close()
    fe.close()
    left = [th for th in threading.enumerate() if th not in before and th.is_alive()]
    assert not left, f"threads left behind: {left}"


def _wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def wait_for():
    """wait_for(condition, timeout, what): poll until true (generous timeouts, never a timed assert)."""
    return _wait_for
