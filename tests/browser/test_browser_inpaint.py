"""Inpainting in JupyterLab (the embedded model as diffusers' StableDiffusionInpaintPipeline): a picture the model
made is the start picture, the Mask… button uploads a mask of its right half, the row says the share repainted,
and Generate repaints that half while the left half stays."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lab_driver import leave_as_found, open_and_run_all, set_theme, wait_for_kernel

pytestmark = pytest.mark.browser

STEPS = 12
CELLS = [
    "import torch\nimport nbdiffuse as nbd\ntorch.set_num_threads(1)\n"
    "start = nbd.trace(nbd.load_pipeline(), 'big red circle on the left, white background', steps=20, guidance=5.0)"
    ".final_image\n"
    "pipe = nbd.load_pipeline(inpaint=True)",
    f"ex = nbd.Explorer(pipe, steps={STEPS}, prompt='big blue square on the right, white background')\n"
    "ex.start_from(start, strength=1.0)\nex",
]


def test_a_mask_uploaded_beside_the_start_picture(lab_server, page, explorer_page, lab_notebook, screenshots):
    path = lab_notebook("inpaint.ipynb", CELLS)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255  # the right half repainted
    Image.fromarray(mask).save(lab_server.root / "mask.png")
    open_and_run_all(page, lab_server, path, workspace="nbd-inpaint")
    try:
        ex = explorer_page(page).wait_visible()
        share = ex.root.locator(".nbd-mask-share")
        share.wait_for(state="visible", timeout=120_000)
        assert share.text_content() == "no mask yet"
        wait_for_kernel(page)
        ex.root.locator("input[aria-label='Mask file']").set_input_files(str(lab_server.root / "mask.png"))
        ex.root.locator(".nbd-mask-share", has_text="50% repainted").wait_for()
        assert ex.root.get_by_label("Upload a mask").text_content() == "Other mask…"
        ex.click("Generate")
        ex.wait_count(f"step {STEPS} / {STEPS}")
        ex.wait_count("done")
        ex.screenshot(screenshots / "inpaint_done.png")
        ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "inpaint_controls.png"))
        set_theme(page, "JupyterLab Dark")
        ex.screenshot(screenshots / "inpaint_dark.png")
    finally:
        leave_as_found(page, lab_server, path)
