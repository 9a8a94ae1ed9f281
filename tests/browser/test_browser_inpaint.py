"""Inpainting in JupyterLab (the embedded model as diffusers' StableDiffusionInpaintPipeline): a picture the model
made is the start picture; the mask is painted with the mouse on the mask pad over its right half (the row then says
the share repainted, the thumbnail tints it), Generate repaints that half while the left half stays; what-if and
"Continue from here" work on the run; then a mask file uploaded with Mask… takes over."""
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
    "pad = ex.mask_pad()\npad.add_class('mask-pad')\npad",
]


def paint_the_right_half(page):
    """Strokes down the right half of the pad, with the mouse, as a person would paint it."""
    canvas = page.locator(".mask-pad canvas").last
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for x in (0.6, 0.75, 0.9):
        page.mouse.move(box["x"] + x * box["width"], box["y"] + 0.05 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x * box["width"], box["y"] + 0.95 * box["height"], steps=12)
        page.mouse.up()


def test_a_mask_painted_then_uploaded(lab_server, page, explorer_page, lab_notebook, screenshots):
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
        page.locator(".mask-pad canvas").last.wait_for(timeout=120_000)
        wait_for_kernel(page)
        paint_the_right_half(page)
        # each stroke's end updates the row; after the last, about the right half (three strokes of 1/8 the pad)
        page.wait_for_function("(el) => /^[3-5][0-9]% repainted$/.test(el.textContent)",
                               arg=share.element_handle(), timeout=60_000)
        page.wait_for_timeout(1000)  # the pad's repaint after the stroke decodes in the page (a look, not an assertion)
        page.locator(".mask-pad").screenshot(path=str(screenshots / "inpaint_pad.png"))
        ex.click("Generate")
        ex.wait_count(f"step {STEPS} / {STEPS}")
        ex.wait_count("done")
        ex.screenshot(screenshots / "inpaint_done.png")
        chip = ex.root.locator("button[data-overlay='mask']")
        chip.click()  # the mask over the x0 frame, kept while scrubbing
        ex.root.locator(".nbd-overlay-canvas").wait_for(state="visible")
        assert "mask: the part the model repaints" in ex.root.locator(".nbd-legend-text").text_content()
        ex.press_on_slider("Home")
        page.wait_for_timeout(500)  # the first step's frame under the mask (a look, not an assertion)
        ex.screenshot(screenshots / "inpaint_mask_overlay.png")
        chip.click()
        page.mouse.move(0, 0)  # off the chip: hovering it shows the mask too

        # What-if and "Continue from here": SD's inpainting pipeline runs its family's loop (core/inpaint_loop.py).
        ex.what_if_at(5, 14)
        ex.screenshot(screenshots / "inpaint_whatif.png")
        ex.click("Continue from here")
        ex.root.locator(".nbd-node").nth(1).wait_for()
        ex.wait_count("done")
        assert "guidance 5 → 14" in ex.root.locator(".nbd-node").nth(1).text_content()
        page.wait_for_timeout(500)  # the branch's last frame (a look, not an assertion)
        ex.screenshot(screenshots / "inpaint_branch.png")

        # A mask file takes over from the pad.
        with page.expect_file_chooser() as chooser:
            ex.root.get_by_label("Upload a mask").click()
        chooser.value.set_files(str(lab_server.root / "mask.png"))
        ex.root.locator(".nbd-mask-share", has_text="50% repainted").wait_for()
        assert ex.root.get_by_label("Upload a mask").text_content() == "Other mask…"
        ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "inpaint_controls.png"))
        set_theme(page, "JupyterLab Dark")
        ex.screenshot(screenshots / "inpaint_dark.png")
    finally:
        leave_as_found(page, lab_server, path)
