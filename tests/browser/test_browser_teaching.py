"""The teaching widgets in JupyterLab 4, one notebook and one page for all of them (keeps it fast).

One test per widget family: it renders, and its slider changes the picture (or the plot).
Screenshots, light and dark, go to build/screenshots/teaching_*.png.
"""
from __future__ import annotations

import os
import pathlib
import re

import nbformat
import pytest

from conftest import _start as start_server  # tests/browser is on sys.path (pytest's rootdir-less import mode)
from lab_driver import new_page, open_and_run_all, widget_errors

pytestmark = pytest.mark.browser

# NBD_TEACHING_PIPE=embedded looks at the shipped shapes model instead (for screenshots of real pictures).
EMBEDDED = os.environ.get("NBD_TEACHING_PIPE", "tiny") == "embedded"
CELLS = [
    "import torch\ntorch.set_num_threads(1)\nimport nbdiffuse as nbd\nfrom nbdiffuse.testing import tiny_sd_pipeline\n"
    "from nbdiffuse.widgets.teaching import (ForwardExplorer, GuidanceSweep, LatentView, SamplerCompare, ScheduleView,\n"
    "                                        SeedsAndPrompts)\n"
    + ("pipe = nbd.load_pipeline()" if EMBEDDED else "pipe = tiny_sd_pipeline()"),
    "fe = ForwardExplorer(pipe=pipe)\nfe",
    "sv = ScheduleView(pipe, steps=10)\nsv",
    "sc = SamplerCompare(pipe, schedulers=['euler', 'dpmpp_2m', 'euler_a'], steps=6)\nsc",
    "lv = LatentView(pipe=pipe)\nlv",
    "gs = GuidanceSweep(pipe, 'big red circle', guidances=[1, 4, 8], seeds=[0, 1], steps=3)\ngs",
    "sp = SeedsAndPrompts(pipe, 'big red circle', seeds=[0, 1, 2], prompts=['big blue circle'], steps=3)\nsp",
    # A pipeline that runs its own loop (Sana Sprint, its SCM sampler's "trigflow"): x0 read from its sampler.
    "from nbdiffuse.testing import tiny_sana_sprint_pipeline\n"
    "xc = SamplerCompare(tiny_sana_sprint_pipeline(), 'a lighthouse', schedulers=['SCMScheduler'], steps=2)\nxc",
]

SERVER_LOG: dict = {}  # the teaching server's log tail (kernel tracebacks land there), for failure messages

HASH_JS = """(canvas) => { if (!canvas.width) return null;
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let h = 2166136261; for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619);
  return `${canvas.width}x${canvas.height}:${h >>> 0}`; }"""


@pytest.fixture(scope="module")
def teaching_server(tmp_path_factory):
    """A Lab server of its own: kernels left by the other browser tests never share its machine time."""
    server = start_server("lab", tmp_path_factory)
    SERVER_LOG["tail"] = server.log_tail
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab(teaching_server, browser):
    """One page with the teaching notebook run top to bottom; shared by this module's tests."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, teaching_server.root / "teaching.ipynb")
    context, page, console = new_page(browser)
    open_and_run_all(page, teaching_server, "teaching.ipynb", workspace="nbd-teaching")
    try:
        # Done when the last widget shows, failed as soon as a cell shows a traceback.
        page.wait_for_function("() => document.querySelectorAll('.nbd-t-sweep').length >= 4"
                               " || document.querySelector('.jp-RenderedText[data-mime-type=\"application/vnd.jupyter.error\"]')",
                               timeout=400_000)
        error = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')
        assert not error.count(), error.first.text_content()
    except Exception:
        shots = pathlib.Path(__file__).resolve().parents[2] / "build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "FAILED_teaching_setup.png"), full_page=True)
        print("browser console (last 30):\n" + "\n".join(console[-30:]))
        raise
    yield page
    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    print("browser console errors:", errors[-10:])
    context.close()
    broken = widget_errors(console)
    assert not broken, "the page reported errors:\n" + "\n".join(broken)


def wait_sweep_done(page, index: int, curve: bool = False, timeout=240_000):
    """Wait until the index-th sweep on the page ends; fail at once, saying how it ended, unless it ended done.

    The sweep is looked up on every poll (never a kept element handle): a view the page re-renders
    meanwhile would leave a kept handle pointing at a detached element that no longer updates.
    """
    state_js = ("(i) => { const r = document.querySelectorAll('.nbd-t-sweep')[i]; if (!r) return null;"
                " return {status: r.dataset.status, text: r.querySelector('.nbd-t-status')?.textContent,"
                " error: r.querySelector('.nbd-t-error')?.textContent, curve: !!r.querySelector('.nbd-t-curve svg')}; }")
    try:
        page.wait_for_function(f"([i, curve]) => {{ const s = ({state_js})(i); return !!s && (['error', 'stopped']"
                               ".includes(s.status) || (s.status === 'done' && (!curve || s.curve))); }",
                               arg=[index, curve], timeout=timeout, polling=250)
    except Exception:
        shots = pathlib.Path(__file__).resolve().parents[2] / "build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "FAILED_teaching_sweep.png"), full_page=True)
        log = SERVER_LOG["tail"]() if "tail" in SERVER_LOG else ""
        raise AssertionError(f"sweep {index} did not end: {page.evaluate(state_js, index)}\nserver log:\n{log}") from None
    state = page.evaluate(state_js, index)
    assert state["status"] == "done", f"sweep {index} ended {state}"

def canvas_hash(locator) -> str | None:
    return locator.evaluate(HASH_JS)


def wait_painted(page, locator, timeout=60_000):
    page.wait_for_function(f"(c) => ({HASH_JS})(c) !== null && c.dataset.empty === 'false'",
                           arg=locator.element_handle(), timeout=timeout)


def wait_changed(page, locator, old, timeout=30_000):
    page.wait_for_function(f"([c, old]) => ({HASH_JS})(c) !== old", arg=[locator.element_handle(), old],
                           timeout=timeout)


def set_range(locator, value):
    locator.evaluate("(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true}));"
                     " el.dispatchEvent(new Event('change', {bubbles: true})); }", value)


def shoot(locator, path):
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))


def test_forward_explorer_slider_dissolves_the_picture(lab, screenshots):
    root = lab.locator(".nbd-t-forward").first
    root.wait_for(state="visible", timeout=120_000)
    pixel = root.locator("canvas[data-view='pixel']")
    wait_painted(lab, pixel)
    assert root.get_attribute("data-t") == "0"
    before = canvas_hash(pixel)
    slider = root.get_by_label("Timestep t", exact=True)
    slider.focus()
    slider.press("End")  # keys reach the slider: JupyterLab does not swallow them
    assert root.get_attribute("data-t") == "999"
    wait_changed(lab, pixel, before)
    set_range(slider, 20)
    lab.wait_for_function("(r) => r.dataset.t === '500'", arg=root.element_handle())
    assert "SNR" in root.locator(".nbd-t-readout").text_content()
    assert root.locator("svg.nbd-t-plot").count() == 3
    shoot(root, screenshots / "teaching_forward.png")


def test_schedule_view_steps_slider_moves_the_points(lab, screenshots):
    root = lab.locator(".nbd-t-schedule").first
    root.wait_for(state="visible")
    assert root.get_attribute("data-points") == "10,10"
    dots = root.locator("circle.nbd-t-dot").count()
    set_range(root.get_by_label("Steps", exact=True), 4)
    lab.wait_for_function("(r) => r.dataset.points === '4,4'", arg=root.element_handle())
    assert root.locator("circle.nbd-t-dot").count() < dots
    root.get_by_label("Sampler 2").select_option("ddim")
    lab.wait_for_function("(r) => /ddim: t =/.test(r.querySelector('.nbd-t-steps').textContent)",
                          arg=root.element_handle())
    shoot(root, screenshots / "teaching_schedule.png")


def test_sampler_compare_shared_scrubber(lab, screenshots):
    root = lab.locator(".nbd-t-sweep").first
    root.wait_for(state="visible")
    wait_sweep_done(lab, 0)
    first = root.locator(".nbd-t-cell canvas").first
    wait_painted(lab, first)
    end = canvas_hash(first)
    set_range(root.get_by_label("Fraction of the run"), 0)
    wait_changed(lab, first, end)
    assert root.locator(".nbd-t-stepno").first.text_content() == "step 1/6"
    assert "Δ vs euler" in root.locator(".nbd-t-info").nth(1).text_content()
    root.locator(".nbd-t-cell").nth(1).click()
    big = root.locator(".nbd-t-detail .nbd-t-big canvas")
    big.wait_for()
    # Opened large (it was a 240 px square, smaller than two cells), within the widget, and brought into
    # view: it opens under the grid, where it was off-screen.
    box, cell, sweep = big.bounding_box(), first.bounding_box(), root.bounding_box()
    assert 2 * cell["width"] <= box["width"] <= 512 and box["x"] + box["width"] <= sweep["x"] + sweep["width"], box
    assert 0 <= box["y"] and box["y"] + box["height"] <= lab.viewport_size["height"], (box, lab.viewport_size)
    set_range(root.get_by_label("Fraction of the run"), 500)
    shoot(root, screenshots / "teaching_sweep.png")
    # The other sweeps share this view: the guidance curve and the keep / tweak controls.
    guidance = lab.locator(".nbd-t-sweep").nth(1)
    wait_sweep_done(lab, 1, curve=True)
    curve = guidance.locator(".nbd-t-curve").text_content()
    assert ("all right" in curve) if EMBEDDED else ("adherence needs the shapes model" in curve)
    shoot(guidance, screenshots / "teaching_guidance.png")
    seeds = lab.locator(".nbd-t-sweep").nth(2)
    wait_sweep_done(lab, 2)
    seeds.get_by_role("button", name="Keep seed 1").click()
    seeds.get_by_role("button", name="Keep seed 1").and_(seeds.locator("[aria-pressed='true']")).wait_for()
    box = seeds.get_by_role("textbox", name="Prompt edit")
    box.fill("big red square")
    box.press("Enter")
    seeds.locator(".nbd-t-rowlabel", has_text="tweaks").wait_for()
    wait_sweep_done(lab, 2)
    shoot(seeds, screenshots / "teaching_seeds.png")


def test_sweep_of_a_pipeline_that_runs_its_own_loop_shows_x0(lab, screenshots):
    root = lab.locator(".nbd-t-sweep").nth(3)
    wait_sweep_done(lab, 3)
    first = root.locator(".nbd-t-cell canvas").first
    wait_painted(lab, first)
    set_range(root.get_by_label("Fraction of the run"), 0)
    lab.wait_for_function("(el) => el.textContent === 'step 1/2'",  # x0 (an x_t-only run's says "· xₜ")
                          arg=root.locator(".nbd-t-stepno").first.element_handle(), timeout=30_000)
    shoot(root, screenshots / "teaching_sweep_sprint.png")


def test_latent_view_renders_channels(lab, screenshots):
    root = lab.locator(".nbd-t-latent").first
    root.wait_for(state="visible")
    tiles = root.locator(".nbd-t-tile canvas")
    assert tiles.count() == 4
    wait_painted(lab, tiles.last)
    wait_painted(lab, root.get_by_label("Full VAE decode of the latents"))
    assert "PSNR" in root.text_content()
    shoot(root, screenshots / "teaching_latent.png")


def test_teaching_widgets_follow_the_dark_theme(lab, screenshots):
    lab.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    lab.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    lab.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Dark$")).click()
    try:
        lab.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
        for kind in ("forward", "schedule", "sweep", "latent"):
            root = lab.locator(f".nbd-t-{kind}").first
            lab.wait_for_function(
                "(el) => { const m = getComputedStyle(el).backgroundColor.match(/\\d+/g); return m && Number(m[0]) < 100; }",
                arg=root.element_handle())
            color = root.evaluate("(el) => getComputedStyle(el).color")
            assert sum(int(v) for v in re.findall(r"\d+", color)[:3]) > 3 * 150, f"{kind}: text must be light on dark"
            shoot(root, screenshots / f"teaching_{kind}_dark.png")
    finally:  # the server's settings outlive this page: leave the light theme for other tests
        lab.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
        lab.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
        lab.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Light$")).click()
        lab.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'")
