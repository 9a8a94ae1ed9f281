"""Overlays in JupyterLab: tick "attention maps", Generate, hover a word of the prompt to lay its map on the
x0 frame, click to keep it while scrubbing, and the guidance overlay; screenshots in the light and dark themes."""
from __future__ import annotations

import pytest
from lab_driver import leave_as_found, open_and_run_all, set_theme, wait_for_kernel, write_notebook

pytestmark = pytest.mark.browser

STEPS = 12
CELLS = [
    "import torch\nimport nbdiffuse as nbd\ntorch.set_num_threads(1)\npipe = nbd.load_pipeline()",
    f"ex = nbd.Explorer(pipe, prompt='big red star at the top, sky background', steps={STEPS}, seed=3)\nex",
]

OVERLAY_HASH = """(root) => {
  const c = root.querySelector('.nbd-overlay-canvas');
  if (c.hidden || !c.width) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261, opaque = 0;
  for (let i = 0; i < d.length; i++) { h = Math.imul(h ^ d[i], 16777619); if (i % 4 === 3 && d[i] > 0) opaque++; }
  return `${h >>> 0}:${opaque}`;
}"""


@pytest.fixture
def overlay_notebook(lab_server, page):
    path = write_notebook(lab_server.root, "overlays.ipynb", CELLS)
    yield path
    leave_as_found(page, lab_server, path)


def test_hover_a_word_to_see_its_map_and_scrub_it(lab_server, page, explorer_page, screenshots, overlay_notebook):
    open_and_run_all(page, lab_server, overlay_notebook, workspace="nbd-overlays")
    ex = explorer_page(page).wait_visible()
    wait_for_kernel(page)
    row = ex.root.locator(".nbd-overlay")
    row.locator(".nbd-overlay-note", has_text="attention maps").wait_for()
    row.locator("input[aria-label='Record attention maps']").check()
    ex.click("Generate")
    ex.wait_count(f"step {STEPS} / {STEPS}")
    ex.wait_count("done")
    red = row.locator(".nbd-chip[data-word]", has_text="red")
    red.wait_for()
    assert ex.root.evaluate(OVERLAY_HASH) is None  # nothing laid over the frame until a word is chosen
    red.hover()
    page.wait_for_function("(root) => root.dataset.overlay === 'red'", arg=ex.root.element_handle())
    last = ex.root.evaluate(OVERLAY_HASH)
    assert last is not None and int(last.split(":")[1]) > 0
    assert "attention to “red”" in row.locator(".nbd-legend-text").text_content()
    red.click()  # kept when the mouse leaves
    ex.root.locator(".nbd-frame[data-view='x0']").hover()
    assert ex.root.evaluate("(root) => root.dataset.overlay") == "red"
    ex.screenshot(screenshots / "overlay_word_light.png")
    ex.press_on_slider("Home")  # scrubbing repaints the overlay for the step shown
    assert ex.position() == f"1 / {STEPS}"
    page.wait_for_function("(root) => root.querySelector('.nbd-legend-text').textContent.endsWith('step 1')",
                           arg=ex.root.element_handle())
    assert ex.root.evaluate(OVERLAY_HASH) != last
    ex.press_on_slider("End")
    guidance = row.locator(".nbd-chip[data-overlay='guidance']")
    guidance.click()
    page.wait_for_function("(root) => root.dataset.overlay === 'guidance'", arg=ex.root.element_handle())
    assert guidance.get_attribute("aria-pressed") == "true" and red.get_attribute("aria-pressed") == "false"
    ex.screenshot(screenshots / "overlay_guidance_light.png")
    red.click()
    ex.root.get_by_role("button", name="decision curve").click()  # under the scrubber, on demand
    ex.root.locator(".nbd-decision").wait_for(state="visible", timeout=180_000)
    assert ex.root.locator(".nbd-decision polyline").count() == 5  # colour, shape, position, size, background
    mark = ex.root.locator(".nbd-decided")
    assert mark.count() == 1 and "colour decided here" in ex.root.locator(".nbd-decision-legend").text_content()
    ex.screenshot(screenshots / "overlay_decision_light.png")
    set_theme(page, "JupyterLab Dark")
    ex.screenshot(screenshots / "overlay_word_dark.png")
    row.screenshot(path=str(screenshots / "overlay_row_dark.png"))


def test_a_words_map_follows_the_run_while_it_goes(lab_server, page, explorer_page, screenshots, overlay_notebook):
    long = 400  # about 12 s on one thread: time to hover a word mid-run
    open_and_run_all(page, lab_server, overlay_notebook, workspace="nbd-overlays-live")
    ex = explorer_page(page).wait_visible()
    wait_for_kernel(page)
    row = ex.root.locator(".nbd-overlay")
    row.locator("input[aria-label='Record attention maps']").check()
    ex.set_steps(long)
    ex.click("Generate")
    red = row.locator(".nbd-chip[data-word]", has_text="red")
    red.wait_for()  # the chips come with the first live frame that carries maps
    red.hover()
    page.wait_for_function("(root) => root.dataset.overlay === 'red'", arg=ex.root.element_handle())
    first = ex.root.evaluate(OVERLAY_HASH)
    legend = row.locator(".nbd-legend-text").text_content()
    assert first is not None and "attention to “red”" in legend
    shown = int(legend.rsplit("step ", 1)[1])
    page.wait_for_function(  # the overlay follows the newest step while the run goes
        "([root, k]) => Number(root.querySelector('.nbd-legend-text').textContent.split('step ').pop()) > k + 20",
        arg=[ex.root.element_handle(), shown])
    assert "done" not in ex.count_text() and ex.root.evaluate(OVERLAY_HASH) is not None
    ex.screenshot(screenshots / "overlay_live_light.png")
    red.click()  # kept: the stopped run's own maps take over from the live ones
    ex.click("Stop")
    ex.wait_count("stopped")
    page.wait_for_function("(root) => root.dataset.overlay === 'red'", arg=ex.root.element_handle())
    assert ex.root.evaluate(OVERLAY_HASH) is not None
    set_theme(page, "JupyterLab Dark")
    ex.screenshot(screenshots / "overlay_stopped_dark.png")


def test_the_html_export_lays_a_words_map_over_the_frame(browser, screenshots, tmp_path):
    import nbdiffuse as nbd

    pipe = nbd.load_pipeline()
    traj = nbd.trace(pipe, "big red star at the top, sky background", steps=8, guidance=5.0, seed=3, attention=True)
    path = tmp_path / "run.html"
    traj.to_html(path)
    for scheme in ("light", "dark"):
        page = browser.new_context(offline=True, color_scheme=scheme).new_page()
        page.goto(path.as_uri())
        assert page.locator("#overlay option").all_text_contents()[:3] == ["none", "guidance", "big"]
        assert page.locator("#ov").is_hidden()
        page.locator("#overlay").select_option(label="red")
        assert page.locator("#ov").is_visible()
        assert "attention to “red”" in page.locator("#legend-text").text_content()
        last = page.locator("#ov").evaluate("(c) => c.toDataURL()")
        page.locator("#scrub").evaluate("(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
        assert page.locator("#ov").evaluate("(c) => c.toDataURL()") != last  # the overlay follows the step
        page.locator("#scrub").evaluate("(el) => { el.value = '7'; el.dispatchEvent(new Event('input')); }")
        page.screenshot(path=str(screenshots / f"overlay_html_export_{scheme}.png"))
        page.context.close()


def test_the_guidance_map_follows_the_run_while_it_goes(lab_server, page, explorer_page, screenshots, overlay_notebook):
    open_and_run_all(page, lab_server, overlay_notebook, workspace="nbd-overlays-guidance")
    ex = explorer_page(page).wait_visible()
    wait_for_kernel(page)
    set_theme(page, "JupyterLab Dark")
    guidance = ex.root.locator(".nbd-overlay .nbd-chip[data-overlay='guidance']")
    assert guidance.is_disabled()  # no run yet: no map
    ex.set_steps(400)  # about 12 s on one thread: time to look mid-run
    ex.click("Generate")
    page.wait_for_function("(b) => !b.disabled", arg=guidance.element_handle(), timeout=60_000)
    guidance.click()  # kept: no recording needed, the step's two predictions make it
    page.wait_for_function("(root) => root.dataset.overlay === 'guidance'", arg=ex.root.element_handle())
    legend = ex.root.locator(".nbd-legend-text")
    assert legend.text_content().startswith("guidance: 0 – ") and ex.root.evaluate(OVERLAY_HASH) is not None
    shown = int(legend.text_content().rsplit("step ", 1)[1])
    page.wait_for_function(  # the overlay follows the newest step while the run goes
        "([root, k]) => Number(root.querySelector('.nbd-legend-text').textContent.split('step ').pop()) > k + 20",
        arg=[ex.root.element_handle(), shown])
    assert "done" not in ex.count_text()
    ex.screenshot(screenshots / "overlay_guidance_live_dark.png")
    ex.click("Stop")
    ex.wait_count("stopped")  # the stopped run's own maps take over
    page.wait_for_function("(root) => root.dataset.overlay === 'guidance'", arg=ex.root.element_handle())
    assert not guidance.is_disabled() and ex.root.evaluate(OVERLAY_HASH) is not None
