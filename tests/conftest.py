import os

import pytest
import torch

# Two contended threads on two slow cores were seen 2-10x slower than one.
torch.set_num_threads(int(os.environ.get("NBD_TEST_THREADS", "1")))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sd_pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline()


@pytest.fixture(scope="session")
def sd_vpred_pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline(prediction_type="v_prediction", seed=1)


@pytest.fixture(scope="session")
def sdxl_pipe():
    from nbdiffuse.testing import tiny_sdxl_pipeline

    return tiny_sdxl_pipeline()


@pytest.fixture(scope="session")
def sd3_pipe():
    from nbdiffuse.testing import tiny_sd3_pipeline

    return tiny_sd3_pipeline()


class UNetCalls:
    """Counts forward calls of a pipeline's UNet through a real forward hook."""

    def __init__(self, pipe):
        self.count = 0
        self._handle = pipe.unet.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.count += 1

    def close(self):
        self._handle.remove()


@pytest.fixture
def unet_calls():
    made = []

    def attach(pipe):
        counter = UNetCalls(pipe)
        made.append(counter)
        return counter

    yield attach
    for counter in made:
        counter.close()
