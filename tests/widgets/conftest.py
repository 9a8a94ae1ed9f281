"""Fixtures for widget tests: one tiny real pipeline per session, an Explorer with a headless frontend."""
from __future__ import annotations

import polling
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline()


@pytest.fixture
def explorer(pipe, open_explorer):
    """An Explorer wired to a HeadlessFrontend that acks frames like explorer.js; closed afterwards."""
    return open_explorer(pipe, steps=8)


@pytest.fixture
def wait_for():
    """wait_for(condition, timeout, what): poll until true (generous timeouts, never a timed assert)."""
    return polling.wait_for
