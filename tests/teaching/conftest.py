"""Fixtures for the teaching widgets: one tiny real pipeline per session (no mocks, nothing downloaded)."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline()
