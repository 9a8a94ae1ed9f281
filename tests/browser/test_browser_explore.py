"""Exploring in JupyterLab: what-if guidance without UNet calls, branch + compare, the offline HTML export."""
from __future__ import annotations

import json
import pathlib
import re

import pytest
from PIL import Image

from lab_driver import leave_as_found, open_and_run_all, set_theme, write_notebook

pytestmark = pytest.mark.browser

STEPS = 12
PROMPT = 'big red circle <script>alert("x")</script> on the left'
CELLS = [
    "import ipywidgets as W\nimport torch\nimport nbdiffuse as nbd\ntorch.set_num_threads(1)",
    "try:\n    pipe = nbd.load_pipeline()\nexcept nbd.EmbeddedModelMissing:\n"
    "    from nbdiffuse.testing import tiny_sd_pipeline\n    pipe = tiny_sd_pipeline()",
    # UNet calls counted by a forward hook and shown in the page, so the test reads them like a user would.
    "calls = W.Label('0')\ncalls.add_class('unet-calls')\n"
    "def _count(*args):\n    calls.value = str(int(calls.value) + 1)\n"
    "pipe.unet.register_forward_hook(_count)\ncalls",
    f"ex = nbd.Explorer(pipe, steps={STEPS}, guidance=5.0)\nex",
    f"ex.generate(prompt={PROMPT!r}, seed=0)\nex.wait(300)",
    # Workshop mode (saved runs, no model) beside it: what needs the model is off, saying why.
    "ex.trajectory.save('workshop.nbd')\nws = nbd.Explorer.from_files(['workshop.nbd'])\nws",
]


def unet_calls(page) -> int:
    return int(page.locator(".unet-calls").first.text_content().strip() or 0)


@pytest.fixture
def explore_notebook(lab_server, page):
    path = write_notebook(lab_server.root, "explore.ipynb", CELLS)
    yield path
    leave_as_found(page, lab_server, path)


def test_what_if_branch_compare_and_html_export(lab_server, page, explorer_page, screenshots, browser, explore_notebook):
    # A workspace of its own: the other Lab tests share the server and must not find this tab open.
    open_and_run_all(page, lab_server, explore_notebook, workspace="nbd-explore")
    ex = explorer_page(page).wait_visible()
    ex.wait_count(f"step {STEPS} / {STEPS}")
    ex.wait_count("done")
    page.wait_for_function("() => Number(document.querySelector('.unet-calls').textContent) > 0")
    full_run_calls = unet_calls(page)
    first_hour_checks(ex, page, screenshots)

    # What-if at step 5: the picture changes, the UNet is not called.
    ex.what_if_at(5, 14)
    assert ex.position() == f"5 / {STEPS}"
    ex.screenshot(screenshots / "explore_whatif.png")
    assert unet_calls(page) == full_run_calls, "what-if guidance must not call the UNet"

    # Continue from here: a branch from step 5 costs the remaining steps only.
    ex.click("Continue from here")
    ex.root.locator(".nbd-node").nth(1).wait_for()
    ex.wait_count("done")
    expected = full_run_calls * (STEPS - 5) // STEPS  # steps 6..12 of 12
    page.wait_for_function(f"() => Number(document.querySelector('.unet-calls').textContent) >= {full_run_calls + expected}")
    page.wait_for_timeout(300)  # a stray extra call would show up by now (not a timed assertion)
    branch_calls = unet_calls(page) - full_run_calls
    assert branch_calls == expected, (branch_calls, full_run_calls)
    assert "guidance 5 → 14" in ex.root.locator(".nbd-node").nth(1).text_content()
    # Continue moved the main slider to 14: the widget says so.
    assert "Guidance 5 → 14" in ex.root.locator(".nbd-guidance-note").text_content()
    ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "explore_continue_note.png"))
    assert ex.root.locator(".nbd-thumb").first.bounding_box()["width"] == 64

    # Compare the run and its branch under one scrubber.
    ex.click("Compare")
    panel = ex.root.locator(".nbd-compare")
    panel.wait_for(state="visible")
    assert panel.locator(".nbd-curve polyline").count() == 1
    diff = json.loads(panel.locator(".nbd-curve").get_attribute("data-difference"))
    assert len(diff) == STEPS and diff[0] == 0 and max(diff) > 0, diff  # same up to step 5, then apart
    captions = [panel.locator(f".nbd-pane[data-compare='{k}'] figcaption").text_content() for k in "ab"]
    assert captions == ["A: #1 · guidance 5", "B: #2 · guidance 5, 14 from step 6"], captions  # what differs
    slider = panel.locator("input[aria-label='Compare step']")
    slider.evaluate("(el) => { el.value = '0'; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    assert panel.locator(".nbd-cat").text_content() == f"1 / {STEPS}"
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(screenshots / "explore_compare.png"))
    ex.root.locator(".nbd-explore").screenshot(path=str(screenshots / "explore_panel.png"))

    # Load the first run from the history panel.
    ex.root.locator(".nbd-node").first.click()
    page.wait_for_function("(root) => root.querySelector('.nbd-node[aria-current=\"true\"]')"
                           " === root.querySelectorAll('.nbd-node')[0]", arg=ex.root.element_handle())

    # Export the HTML page and open it with no server; the page says where files go and downloads them.
    ex.root.locator(".nbd-export > summary").click()
    assert str(lab_server.root) in ex.root.locator(".nbd-where").text_content()
    ex.click("Export HTML")
    link = ex.root.locator(".nbd-files a", has_text=".html")
    link.wait_for()
    path = lab_server.root / link.first.text_content()
    assert path.exists() and re.fullmatch(r"big-red-circle-script-alert-x-script-on_run1\.html", path.name), path.name
    with page.expect_download() as download:
        link.first.click()
    assert download.value.suggested_filename == path.name
    assert pathlib.Path(download.value.path()).read_bytes() == path.read_bytes()
    export_range_checks(ex, lab_server.root)
    ex.screenshot(screenshots / "explore_exported.png")
    offline = browser.new_context(offline=True).new_page()
    alerts = []
    offline.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    offline.goto(path.as_uri())
    assert "<script>" in offline.locator("#prompt").text_content() and not alerts
    first = offline.locator("#x0").get_attribute("src")
    offline.locator("#scrub").evaluate("(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    assert offline.locator("#x0").get_attribute("src") != first
    assert re.match(rf"step 1 / {STEPS}", offline.locator("#label").text_content())
    offline.screenshot(path=str(screenshots / "explore_html_export.png"), full_page=True)
    offline.context.close()

    # Image to image: upload a start picture, generate from it at the default strength 0.8.
    start = lab_server.root / "start.png"
    Image.new("RGB", (64, 64), (30, 90, 220)).save(start)
    ex.root.locator("input[aria-label='Picture file']").set_input_files(str(start))
    ex.root.locator(".nbd-startpic").wait_for(state="visible")
    assert ex.root.get_by_label("Use the start picture").is_checked()
    ex.click("Generate")
    runs = int(STEPS * 0.8)  # the last int(steps * strength) steps run
    ex.wait_count(f"step {runs} / {runs}")
    ex.wait_count("done")
    ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "explore_img2img_controls.png"))

    # The comparison stays open: its pickers show the runs it compares (#1, #2), not the newest runs.
    ex.root.locator(".nbd-node").nth(2).wait_for()
    picked = [ex.root.locator(f"select[aria-label='Compare run {k}'] option:checked").text_content() for k in "AB"]
    assert picked[0].startswith("#1 ") and picked[1].startswith("#2 "), picked
    ex.root.locator("select[aria-label='Compare run B']").select_option(index=2)  # #3: the panel follows
    panel.locator(".nbd-pane[data-compare='b'] figcaption", has_text="B: #3").wait_for()
    workshop_checks(page)

    # The same panel in JupyterLab's dark theme (a look for the screenshots, not an assertion).
    set_theme(page, "JupyterLab Dark")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    ex.root.locator(".nbd-explore").screenshot(path=str(screenshots / "explore_panel_dark.png"))
    ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "explore_controls_dark.png"))
    ex.root.locator(".nbd-export").screenshot(path=str(screenshots / "explore_export_dark.png"))
    ex.screenshot(screenshots / "explore_dark.png")


def first_hour_checks(ex, page, screenshots):
    """What a tester met in the first hour: dropped words, rate vs time, and Steps typed out of range."""
    # The embedded model knows none of "<script>alert("x")</script>": the widget says it dropped them.
    notice = ex.root.locator(".nbd-notices")
    assert "unknown words ignored" in notice.text_content() and notice.is_visible()
    # The rate is steps per second of the time shown: 12 steps / "done in" s.
    match = re.search(r"step (\d+) / \d+, ([\d.]+) it/s, done in ([\d.]+) s", ex.count_text())
    steps, its, seconds = int(match[1]), float(match[2]), float(match[3])
    assert abs(its * seconds - steps) <= 0.05 * (its + seconds) + 0.1, ex.count_text()  # shown to 1 decimal
    # Steps typed as 0: outlined, said with the allowed range, and Generate runs nothing else.
    nodes = ex.root.locator(".nbd-node").count()
    ex.set_steps(0)
    problem = ex.root.locator(".nbd-controls .nbd-input-problem")
    assert problem.text_content() == "Steps must be a whole number from 1 to 1000; got 0."
    assert ex.root.get_by_label("Steps", exact=True).get_attribute("aria-invalid") == "true"
    ex.click("Generate")
    assert problem.text_content().startswith("Generate did not run: Steps must be")
    ex.root.locator(".nbd-controls").screenshot(path=str(screenshots / "explore_steps_refused.png"))
    page.wait_for_timeout(500)  # a run, had one started, would show by now (not an assertion on time)
    assert ex.root.locator(".nbd-node").count() == nodes and "done" in ex.count_text()
    ex.set_steps(STEPS)
    assert problem.is_hidden()


def export_range_checks(ex, root):
    """The export range is the whole run shown; a range typed out of bounds is said, not clamped."""
    start, stop = ex.root.get_by_label("Export from step"), ex.root.get_by_label("Export to step")
    assert (start.input_value(), stop.input_value()) == ("1", str(STEPS))
    ex.click("Export GIF")
    gif = ex.root.locator(".nbd-files a", has_text=".gif")
    gif.wait_for()
    assert Image.open(root / gif.first.text_content()).n_frames == STEPS
    stop.fill("5000")
    stop.press("Tab")
    ex.click("Export GIF")
    problem = ex.root.locator(".nbd-export .nbd-input-problem")
    said = f"GIF export did not run: to step must be a whole number from 1 to {STEPS}; got 5000."
    assert problem.text_content() == said
    stop.fill(str(STEPS))
    stop.press("Tab")
    assert problem.is_hidden()


def workshop_checks(page):
    """The workshop-mode Explorer beside: Generate and "Start from a picture…" off, with the reason."""
    ws = page.locator(".nbd-explorer").nth(1)
    ws.scroll_into_view_if_needed()
    for name in ("Generate", "Upload a start picture"):
        button = ws.get_by_role("button", name=name, exact=True)
        assert button.is_disabled() and "saved runs only" in button.get_attribute("title"), name
