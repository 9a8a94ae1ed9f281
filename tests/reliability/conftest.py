"""Fixtures for fault and load tests: the tiny real pipeline, Explorers with a headless frontend, timed-out waits.

Nothing here is a mock: the pipeline is nbdiffuse.testing's tiny real StableDiffusionPipeline
(random weights, seeded) and faults are injected by wrapping its real UNet.
"""
from __future__ import annotations

import threading

import pytest
import torch

from reliability_helpers import UNetFault, new_threads

torch.set_num_threads(1)


@pytest.fixture
def pipe(sd_pipe):
    return sd_pipe


@pytest.fixture
def explorer(pipe):
    """make(**defaults) -> (Explorer, HeadlessFrontend); all closed afterwards, and no thread may be left."""
    from nbdiffuse.widgets import Explorer
    from nbdiffuse.widgets.headless import HeadlessFrontend

    before = set(threading.enumerate())
    made = []

    def make(**defaults):
        ex = Explorer(pipe, **defaults)
        fe = HeadlessFrontend(ex)
        made.append((ex, fe))
        return ex, fe

    yield make
    for ex, fe in made:
        ex.close()
        fe.close()
    left = new_threads(before)
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def unet_fault(pipe, monkeypatch):
    return lambda at, action: UNetFault(pipe, monkeypatch, at, action)
