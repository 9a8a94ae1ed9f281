"""nbd.SweepView in JupyterLab 4: the grid paints, its labels show, the one scrubber moves every cell,
x_t and x0 switch, the adherence strips draw, and a clicked cell opens in the Explorer below.
Screenshot: build/screenshots/sweep_view.png."""
from __future__ import annotations

import pytest

from lab_driver import open_and_run_all

pytestmark = pytest.mark.browser

CELLS = [
    "import torch\ntorch.set_num_threads(1)\nimport nbdiffuse as nbd\n"
    "sw = nbd.sweep(None, 'big red circle on the left, white background', axes={'seed': [0, 1], 'guidance': [1.0, 6.0]},"
    " steps=4, progress=False)\nview = nbd.SweepView(sw)\nview",
]

HASH_JS = """(canvas) => { if (!canvas.width) return null;
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let h = 2166136261; for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619);
  return `${canvas.width}x${canvas.height}:${h >>> 0}`; }"""


def hashes(root):
    return [c.evaluate(HASH_JS) for c in root.locator("canvas.nbd-sw-pic").all()]


ALL_CHANGED = f"([r, old]) => [...r.querySelectorAll('canvas.nbd-sw-pic')].every((c, i) => ({HASH_JS})(c) !== old[i])"


def set_range(locator, value):
    locator.evaluate("(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }", value)


def test_sweep_grid_scrubs_and_opens_a_cell(lab_server, lab_notebook, page, screenshots):
    path = lab_notebook("sweep_view.ipynb", CELLS)
    open_and_run_all(page, lab_server, path, workspace="nbd-sweep")
    page.wait_for_function("() => document.querySelector('.nbd-sweep[data-done=\"true\"]')"
                           " || document.querySelector('.jp-RenderedText[data-mime-type=\"application/vnd.jupyter.error\"]')",
                           timeout=400_000)
    error = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')
    assert not error.count(), error.first.text_content()
    root = page.locator(".nbd-sweep").first
    assert [c.text_content() for c in root.locator(".nbd-sw-collabel").all()] == ["guidance 1", "guidance 6"]
    assert [c.text_content() for c in root.locator(".nbd-sw-rowlabel").all()] == ["seed 0", "seed 1"]
    assert root.locator(".nbd-sw-status").text_content() == "4 / 4 cells done"
    page.wait_for_function("(r) => [...r.querySelectorAll('canvas.nbd-sw-pic')].every(c => c.dataset.empty === 'false')",
                           arg=root.element_handle())
    last = hashes(root)
    assert len(set(last)) == 4  # four different runs
    assert all(not s.get_attribute("hidden") for s in root.locator("canvas.nbd-sw-heat").all())  # the embedded model
    assert "% right" in root.locator(".nbd-sw-note").first.text_content()

    scrub = root.locator("input.nbd-sw-scrub")
    set_range(scrub, 0)  # every cell at its first step
    page.wait_for_function("() => document.querySelector('.nbd-sw-at').textContent === '1 / 4'")
    page.wait_for_function(ALL_CHANGED, arg=[root.element_handle(), last])
    first = hashes(root)
    root.locator("select.nbd-sw-view").select_option("xt")
    page.wait_for_function(ALL_CHANGED, arg=[root.element_handle(), first])
    root.locator("select.nbd-sw-view").select_option("x0")
    set_range(scrub, 2)

    root.locator("button.nbd-sw-cell").nth(3).click()  # seed 1, guidance 6: opens in the Explorer
    page.locator(".nbd-explorer").first.wait_for(state="visible", timeout=120_000)
    page.wait_for_function("() => document.querySelector('button.nbd-sw-cell[data-cell=\"3\"]')"
                           ".getAttribute('aria-pressed') === 'true'")
    root.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "sweep_view.png"), full_page=False)
