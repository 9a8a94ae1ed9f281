"""A pipeline nbdiffuse has no family for (AltDiffusionPipeline) in JupyterLab: x0 and x_t live, the rest says
why not.

The Explorer runs it through callback_on_step_end: the noisy latent every step and x0 read from what its
sampler is given, the counter to N / N, and what-if and branching disabled with the reason shown.
"""
from __future__ import annotations

import json

import pytest

from lab_driver import open_and_run_all, wait_for_kernel

pytestmark = pytest.mark.browser

STEPS = 8
CELLS = [
    "import torch\nimport nbdiffuse as nbd\nfrom nbdiffuse.testing import tiny_alt_diffusion_pipeline\n"
    "torch.set_num_threads(1)\npipe = tiny_alt_diffusion_pipeline()",
    f"ex = nbd.Explorer(pipe, steps={STEPS}, guidance=5.0)\nex",
]


def test_a_pipeline_without_a_family_shows_x0_and_x_t_and_says_what_it_cannot_do(lab_server, page, explorer_page,
                                                                         lab_notebook, screenshots):
    open_and_run_all(page, lab_server, lab_notebook("generic.ipynb", CELLS), workspace="nbd-generic")
    ex = explorer_page(page).wait_visible()
    note = ex.root.locator(".nbd-capnote")
    note.wait_for(state="visible", timeout=120_000)
    assert "runs its own loop: nbdiffuse reads each step's x_t and x0 from its sampler" in note.text_content()
    wait_for_kernel(page)
    ex.watch_frames()
    ex.click("Generate")
    ex.wait_count(f"step {STEPS} / {STEPS}")
    ex.wait_count("done")
    assert ex.root.locator("canvas[data-view='xt']").is_visible() and ex.root.locator("canvas[data-view='x0']").is_visible()
    assert ex.root.get_by_role("button", name="Show x0").is_enabled()
    assert ex.root.get_by_role("button", name="Branch here").is_disabled()
    assert ex.root.get_by_role("button", name="decision curve").is_disabled()
    ex.press_on_slider("Home")
    assert ex.position() == f"1 / {STEPS}"
    ex.screenshot(screenshots / "generic_done.png")

    # A second run from another seed, compared with the first: on x0.
    ex.click("Random seed")
    ex.click("Generate")
    page.wait_for_function("(root) => root.querySelectorAll('.nbd-node').length === 2", arg=ex.root.element_handle(),
                           timeout=180_000)
    ex.wait_count("done")
    ex.click("Compare")
    panel = ex.root.locator(".nbd-compare")
    panel.wait_for(state="visible")
    assert "of x₀" in panel.locator(".nbd-gtext").text_content()
    diff = json.loads(panel.locator(".nbd-curve").get_attribute("data-difference"))
    assert len(diff) == STEPS and min(diff) > 0, diff  # two seeds: apart at every step
    assert not ex.root.locator(".nbd-error", has_text="x0").is_visible()
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(screenshots / "generic_compare.png"))
