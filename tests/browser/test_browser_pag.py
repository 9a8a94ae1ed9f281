"""A PAG pipeline in JupyterLab (the embedded model as diffusers' StableDiffusionPAGPipeline, its up blocks
perturbed): the PAG slider under Guidance reaches the run, the what-if re-weighs PAG at the shown step (no model
call), "Branch here" with another PAG scale joins the run tree, saying so, and the slider dragged during a run
steers its next steps."""
from __future__ import annotations

import pytest

from lab_driver import leave_as_found, open_and_run_all, set_theme, wait_for_kernel

pytestmark = pytest.mark.browser

STEPS = 12
CELLS = [
    "import torch\nimport nbdiffuse as nbd\nfrom diffusers import StableDiffusionPAGPipeline\n"
    "torch.set_num_threads(1)\n"
    "pipe = StableDiffusionPAGPipeline.from_pipe(nbd.load_pipeline(), pag_applied_layers='up')",
    f"ex = nbd.Explorer(pipe, steps={STEPS}, guidance=5.0, prompt='a red circle on the left, a blue square on the right')\n"
    "ex",
]


def set_range(locator, value) -> None:
    locator.evaluate(f"(el) => {{ el.value = '{value}'; el.dispatchEvent(new Event('input', {{bubbles: true}}));"
                     " el.dispatchEvent(new Event('change', {bubbles: true})); }")


def test_pag_slider_what_if_and_branch(lab_server, page, explorer_page, lab_notebook, screenshots):
    path = lab_notebook("pag.ipynb", CELLS)
    open_and_run_all(page, lab_server, path, workspace="nbd-pag")
    try:
        ex = explorer_page(page).wait_visible()
        pag = ex.root.locator("input[aria-label='PAG scale']")
        pag.wait_for(state="visible", timeout=120_000)
        assert ex.root.locator(".nbd-pag-row output").text_content() == "3.0"  # the pipeline's own default
        wait_for_kernel(page)
        set_range(pag, "1.5")
        ex.click("Generate")
        ex.wait_count(f"step {STEPS} / {STEPS}")
        ex.wait_count("done")
        whatif = ex.root.locator("input[aria-label='What-if PAG scale']")
        whatif.wait_for(state="visible")
        assert whatif.input_value() == "1.5"  # the shown run's PAG at the shown step

        # What if no PAG at step 8: the x0 picture changes, the badge says both values.
        ex.press_on_slider("Home")
        for _ in range(7):
            ex.press_on_slider("ArrowRight")
        page.wait_for_timeout(300)  # let the scrub's full-VAE frame land first (not an assertion)
        before = ex.frame_hash()
        set_range(whatif, "0")
        ex.wait_frame_change(before)
        ex.root.locator(".nbd-badge", has_text="what if guidance 5.0, PAG 0.0").wait_for()
        ex.screenshot(screenshots / "pag_whatif.png")

        # Branch here with PAG 0 from step 8: the tree says what changed.
        set_range(pag, "0")
        ex.click("Branch here")
        ex.root.locator(".nbd-node").nth(1).wait_for(timeout=180_000)
        ex.wait_count("done")
        assert "PAG 1.5 → 0" in ex.root.locator(".nbd-node").nth(1).text_content()
        ex.screenshot(screenshots / "pag_branch.png")

        # Dragged during a run (held here, so that the step it steers is known), PAG steers the next step.
        set_range(pag, "2")
        ex.set_steps(300)
        ex.click("Generate")
        ex.wait_steps(3, 300)
        held = ex.hold()
        set_range(pag, "0.5")
        ex.click("Step once")
        ex.wait_steps(held + 1, 300)
        ex.wait_count("(paused)")
        assert ex.root.locator(".nbd-pag-row output").text_content() == "0.5"  # the held state left it there
        ex.screenshot(screenshots / "pag_live_paused.png")
        ex.click("Stop")
        ex.wait_count("stopped")
        newest = ex.root.locator(".nbd-node").nth(2)
        newest.wait_for()
        assert f"2, 0.5 from step {held + 1}" in newest.text_content(), newest.text_content()  # PAG (…) → (…)
        ex.screenshot(screenshots / "pag_live_stopped.png")
        set_theme(page, "JupyterLab Dark")
        ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "pag_controls_dark.png"))
        ex.screenshot(screenshots / "pag_branch_dark.png")
    finally:
        leave_as_found(page, lab_server, path)
