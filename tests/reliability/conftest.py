"""Fixtures for fault and load tests: the tiny real pipeline, Explorers with a headless frontend, timed-out waits.

Nothing here is a mock: the pipeline is nbdiffuse.testing's tiny real StableDiffusionPipeline
(random weights, seeded) and faults are injected by wrapping its real UNet.
"""
from __future__ import annotations

import pytest
import torch

from reliability_helpers import UNetFault

torch.set_num_threads(1)


@pytest.fixture
def pipe(sd_pipe):
    return sd_pipe


@pytest.fixture
def explorer(pipe, open_explorer):
    """make(**defaults) -> (Explorer, HeadlessFrontend); all closed afterwards, and no thread may be left."""
    return lambda **defaults: open_explorer(pipe, **defaults)


@pytest.fixture
def unet_fault(pipe, monkeypatch):
    return lambda at, action: UNetFault(pipe, monkeypatch, at, action)
