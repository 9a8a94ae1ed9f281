"""Frames from a tiny autoencoder in JupyterLab: the frames sent while the run goes and the frames
kept for the scrubber are its decodes at the output size, tagged as the tiny decoder's.

The tiny autoencoder has random weights (nothing is downloaded): its pictures are noise, but
their size tells which decoder made them.
"""
from __future__ import annotations

import pytest

from lab_driver import open_and_run_all, wait_for_kernel

pytestmark = pytest.mark.browser

STEPS = 20
CELLS = [
    "import torch\nimport nbdiffuse as nbd\nfrom diffusers import AutoencoderTiny\ntorch.set_num_threads(1)\n"
    "pipe = nbd.load_pipeline()\ntorch.manual_seed(0)\n"
    "nbd.set_tiny_decoder(pipe, AutoencoderTiny(encoder_block_out_channels=(16, 16, 16), "
    "decoder_block_out_channels=(16, 16, 16), num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1)))",
    f"ex = nbd.Explorer(pipe, steps={STEPS})  # preview='auto': the tiny autoencoder, now that one is set\nex",
]


def test_tiny_autoencoder_frames_show_live_and_stay_for_scrubbing(lab_server, page, explorer_page,
                                                                  lab_notebook, screenshots):
    open_and_run_all(page, lab_server, lab_notebook("tiny_preview.ipynb", CELLS), workspace="nbd-tiny")
    ex = explorer_page(page).wait_visible()
    wait_for_kernel(page)
    ex.watch_frames()
    ex.click("Generate")
    ex.wait_count(f"step {STEPS} / {STEPS}")
    ex.wait_count("done")
    seen = page.evaluate("() => [...window.__nbdSeen]")
    live = [h for h in seen if h.startswith("64x64:")]
    # Several 64x64 pictures: tiny-AE live frames (the final full-VAE frame is one more at most).
    assert len(live) >= 3, seen
    ex.press_on_slider("Home")
    assert ex.position() == f"1 / {STEPS}"
    ex.page.wait_for_function(  # step 1 as kept: the tiny autoencoder's frame at the output size, tagged
        "(root) => root.querySelector('canvas[data-view=\"x0\"]').width === 64 &&"
        " root.querySelector('.nbd-pane[data-view=\"x0\"] .nbd-kind').dataset.kind === 'tiny'",
        arg=ex.root.element_handle(), timeout=30_000)
    ex.screenshot(screenshots / "tiny_preview_scrubbed.png")
