"""The Explorer in JupyterLab 4, driven like a user in headless Chromium."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from lab_driver import open_and_run_all, wait_for_kernel
from nbdiffuse.widgets.frames import LOSSLESS_TYPE, decode_frame, mime_type

pytestmark = pytest.mark.browser

LONG = 120  # steps of the watched run: long enough to see it form and to steer it mid-run


def save_notebook(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Save Notebook$")).click()


def test_lab_live_run_scrub_guidance_and_stop(lab_server, page, explorer_page, screenshots, metric):
    open_and_run_all(page, lab_server, "quickstart.ipynb")
    ex = explorer_page(page).wait_visible()
    ex.wait_count("step 20 / 20")  # the quickstart's own programmatic run
    ex.screenshot(screenshots / "lab_quickstart_done.png")

    # Generate: watch the picture form, and turn guidance down mid-run.
    ex.set_steps(LONG)
    ex.watch_frames()
    ex.click("Generate")
    ex.wait_steps(10, LONG)
    # While it runs the scrubber counts the planned steps, as the progress line does ("12 / 120").
    assert re.fullmatch(rf"\d+ / {LONG}", ex.position()), ex.position()
    ex.set_guidance(2.0)
    ex.screenshot(screenshots / "lab_running.png")
    ex.wait_count(f"step {LONG} / {LONG}")
    assert ex.frames_seen() >= 3, "the shown pixels did not change during the run"
    ex.wait_count("done")
    segments = ex.guidance_segments()
    start = segments[0][1]  # the model's default guidance (5 for the embedded model)
    assert len(segments) >= 2 and start != 2.0 and segments[-1][1] == 2.0, segments
    assert segments[-1][0] >= 10, "the change must land after the steps already done"
    assert f"guidance {start:g} from step 1" in ex.root.locator(".nbd-gtext").first.text_content()
    ex.screenshot(screenshots / "lab_done.png")

    # Scrub: drag, then keys on the slider and on the picture.
    end = ex.frame_hash()
    ex.drag_scrubber(0.98, 0.05)
    ex.wait_frame_change(end)
    assert not ex.position().startswith(f"{LONG} ")
    ex.press_on_slider("End")
    assert ex.position() == f"{LONG} / {LONG}"
    ex.press_on_slider("Home")
    assert ex.position() == f"1 / {LONG}"
    first = ex.frame_hash()
    ex.press_on_slider("ArrowRight")
    assert ex.position() == f"2 / {LONG}"
    ex.wait_frame_change(first)
    ex.root.locator(".nbd-stage:not(.nbd-compare-stage)").focus()
    ex.root.locator(".nbd-stage:not(.nbd-compare-stage)").press("End")
    assert ex.position() == f"{LONG} / {LONG}"
    ex.root.locator(".nbd-stage:not(.nbd-compare-stage)").press("ArrowLeft")
    assert ex.position() == f"{LONG - 1} / {LONG}"
    ex.screenshot(screenshots / "lab_scrubbed.png")
    latency = ex.paint_latency(60)
    assert latency["changed"] > latency["samples"] // 2
    metric("lab_scrub_paint_ms", latency)
    metric("lab_scrub_drag_ms", ex.drag_latency(60))

    # Pause, Step, Resume, Stop.
    ex.set_steps(400)
    ex.click("Generate")
    ex.wait_steps(5, 400)
    held = ex.hold()
    assert "it/s" not in ex.count_text(), ex.count_text()  # no rate while held: it would only fall
    ex.root.get_by_role("button", name="Resume").wait_for()
    ex.click("Step once")
    ex.wait_steps(held + 1, 400)
    ex.wait_count("(paused)")
    assert ex.steps_done() == held + 1
    ex.screenshot(screenshots / "lab_paused.png")
    ex.click("Resume")
    ex.wait_steps(held + 4, 400)
    ex.click("Stop")
    ex.wait_count("stopped")
    assert ex.steps_done() < 400
    ex.screenshot(screenshots / "lab_stopped.png")

    # Save with widget state for the next test.
    save_notebook(page)
    saved = lab_server.root / "quickstart.ipynb"
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=60_000)
    state = json.loads(saved.read_text())["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    explorers = [m for m in state["state"].values() if "frames_x0" in m.get("state", {})]
    assert explorers and explorers[0]["state"]["n_steps"] == ex.steps_done()


def test_lab_saved_notebook_scrubs_without_its_kernel(lab_server, page, explorer_page, screenshots):
    saved = lab_server.root / "quickstart.ipynb"
    metadata = json.loads(saved.read_text())["metadata"]
    if "widgets" not in metadata:
        pytest.skip("needs the notebook saved by test_lab_live_run_scrub_guidance_and_stop")
    models = metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    saved_buffers = next({tuple(b["path"]): base64.b64decode(b["data"]) for b in m.get("buffers", [])}
                         for m in models if "frames_x0" in m.get("state", {}))
    for session in lab_server.api("GET", "/api/sessions"):  # the kernel that made the frames is gone
        lab_server.api("DELETE", f"/api/sessions/{session['id']}")
    page.goto(f"{lab_server.url}/lab/tree/quickstart.ipynb?reset")
    # JupyterLab restores saved widget state once a kernel connects (a fresh one, that never
    # ran these cells); then that kernel is shut down too, and scrubbing must still work.
    ex = explorer_page(page).wait_visible()
    wait_for_kernel(page)
    for session in lab_server.api("GET", "/api/sessions"):
        lab_server.api("DELETE", f"/api/sessions/{session['id']}")
    page.wait_for_function(
        "() => { const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');"
        " const n = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName');"
        " return /No Kernel/.test(n.textContent) || !['idle', 'busy'].includes(s.getAttribute('data-status')); }")
    print("kernel after shutdown:", page.evaluate(
        "() => [document.querySelector('.jp-Toolbar-kernelName').textContent,"
        " document.querySelector('.jp-Notebook-ExecutionIndicator').getAttribute('data-status')]"))
    n = ex.steps_done()
    planned = int(re.search(r"step \d+ / (\d+)", ex.count_text())[1])  # the stopped run's planned steps
    assert n > 0 and "stopped" in ex.count_text() and planned == 400
    ex.root.locator("canvas[data-view='x0']").scroll_into_view_if_needed()
    page.wait_for_function("() => { const c = document.querySelector('.nbd-explorer canvas[data-view=\"x0\"]');"
                           " return c && c.width > 0; }")
    last = ex.frame_hash()
    ex.drag_scrubber(0.95, 0.1)
    ex.wait_frame_change(last)
    ex.press_on_slider("Home")
    assert ex.position() == f"1 / {planned}"
    home = ex.wait_frame_change(last) if n > 1 else last
    # The first step's frame as the notebook saved it (the tiny decoder's, as JPEG: frames.encode_tiny),
    # as this kernel's Pillow decodes it (two JPEG decoders may round a few values apart).
    first = decode_frame(saved_buffers[("frames_x0", 0)])
    assert mime_type(saved_buffers[("frames_x0", 0)]) == "image/jpeg"
    assert np.abs(ex.pixels("x0").astype(int) - first).mean() < 1
    ex.press_on_slider("End")
    assert ex.position() == f"{n} / {planned}"
    ex.wait_frame_change(home)
    # The stopped run's last step as the full VAE drew it, kept lossless (WebP) in the saved state.
    final = saved_buffers[("full_frames", f"{n - 1}:x0")]
    assert mime_type(final) == LOSSLESS_TYPE
    page.wait_for_function("(c) => c.width === 64", arg=ex.root.locator("canvas[data-view='x0']").element_handle())
    assert (ex.pixels("x0") == decode_frame(final)).all()
    ex.click("Generate")  # nothing behind it: the widget says so instead of failing silently
    ex.root.locator(".nbd-note", has_text="kernel").wait_for(timeout=30_000)
    ex.screenshot(screenshots / "lab_reopened_no_kernel.png")


def background_luminance(ex) -> float:
    rgb = ex.root.evaluate("(el) => getComputedStyle(el).backgroundColor")
    r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_lab_dark_theme(lab_server, page, explorer_page, screenshots):
    page.goto(f"{lab_server.url}/lab/tree/quickstart.ipynb")
    ex = explorer_page(page).wait_visible()
    assert background_luminance(ex) > 0.8
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    page.wait_for_function(
        "(el) => { const m = getComputedStyle(el).backgroundColor.match(/\\d+/g); return m && Number(m[0]) < 100; }",
        arg=ex.root.element_handle())
    assert background_luminance(ex) < 0.3
    text = ex.root.evaluate("(el) => getComputedStyle(el).color")
    assert sum(int(v) for v in re.findall(r"\d+", text)[:3]) > 3 * 150, "text must be light on a dark theme"
    ex.screenshot(screenshots / "lab_dark.png")
    # back to the light theme: settings persist for the whole session's server
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Light$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'")
