"""A ControlNet in the Explorer, in JupyterLab: a control picture drawn on the sketch pad, Generate, the
control's strength per step under the scrubber, its start/end window, "No control from here" as a
branch, a refused upload named in the widget; screenshots during a run, after, and in the dark theme."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_driver import leave_as_found, open_and_run_all, set_theme, write_notebook

pytestmark = pytest.mark.browser

STEPS = 24
CELLS = [
    "import torch\nimport nbdiffuse as nbd\ntorch.set_num_threads(1)",
    # The embedded model's outline ControlNet where it is shipped; else a tiny seeded one (same controls).
    "try:\n    pipe = nbd.load_pipeline(controlnet='outline')\nexcept (nbd.EmbeddedModelMissing, nbd.PipelineLoadError):\n"
    "    from nbdiffuse.testing import tiny_controlnet_pipeline\n    pipe = tiny_controlnet_pipeline()",
    f"ex = nbd.Explorer(pipe, steps={STEPS}, prompt='big red square on the left')\nex",
    # The sketch pad for an outline (white on black, 256 pixels a side): the test draws on it with the mouse.
    "pad = ex.control_pad()\npad.add_class('control-pad')\npad",
]
THUMB_JS = """(img) => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
  let left = 0, right = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 128) { if ((i / 4) % c.width < c.width / 2) left++; else right++; }
  return [left, right]; }"""


def draw_square_on_the_left(page):
    """A square outline on the left half of the pad, drawn with the mouse as a person would."""
    canvas = page.locator(".control-pad canvas").last
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    corners = [(0.1, 0.3), (0.45, 0.3), (0.45, 0.7), (0.1, 0.7), (0.1, 0.3)]
    page.mouse.move(box["x"] + corners[0][0] * box["width"], box["y"] + corners[0][1] * box["height"])
    page.mouse.down()
    for x, y in corners[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
    page.mouse.up()


def strengths(ex) -> list:
    return json.loads(ex.root.locator(".nbd-cstrip").get_attribute("data-strengths") or "[]")


def wait_strengths(ex, n: int, also: str = "true", timeout=180_000):
    """Wait until the strength strip holds n steps and the JS condition `also` (on s, n and root) holds."""
    ex.page.wait_for_function(
        "([root, n]) => { const s = JSON.parse(root.querySelector('.nbd-cstrip').dataset.strengths || '[]');"
        f" return s.length === n && {also}; }}",
        arg=[ex.root.element_handle(), n], timeout=timeout)


def set_range(ex, label: str, value: float):
    ex.root.locator(f"input[aria-label='{label}']").evaluate(
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true}));"
        " el.dispatchEvent(new Event('change', {bubbles: true})); }", value)


@pytest.fixture
def lab_notebook(lab_server, page):
    """make(name, cells): a notebook in the lab's root; each one made is left as found afterwards."""
    made = []

    def make(name, cells):
        made.append(write_notebook(lab_server.root, name, cells))
        return made[-1]
    yield make
    for path in made:
        leave_as_found(page, lab_server, path)


@pytest.fixture
def control_notebook(lab_notebook):
    return lab_notebook("control.ipynb", CELLS)


def test_control_picture_strength_strip_window_and_no_control_branch(lab_server, page, explorer_page, screenshots,
                                                                    control_notebook):
    open_and_run_all(page, lab_server, control_notebook, workspace="nbd-control")
    ex = explorer_page(page).wait_visible()
    row = ex.root.locator(".nbd-control")
    row.wait_for(state="visible", timeout=180_000)  # the pipeline has a ControlNet: its controls show
    ex.root.locator(".nbd-control-kind", has_text="sketch pad").wait_for(timeout=180_000)
    assert ex.root.locator(".nbd-controlpic").is_visible()
    draw_square_on_the_left(page)
    # The stroke shows in the Explorer's control thumbnail before any Generate (the kernel drew it on the pad).
    ex.page.wait_for_function(f"(img) => img.complete && img.naturalWidth && ({THUMB_JS})(img)[0] > 20",
                              arg=ex.root.locator(".nbd-controlpic").element_handle(), timeout=60_000)
    page.locator(".control-pad").screenshot(path=str(screenshots / "control_pad.png"))

    ex.root.scroll_into_view_if_needed()
    ex.click("Generate")
    ex.wait_steps(2, STEPS)
    ex.screenshot(screenshots / "control_running.png")
    ex.wait_count("done")
    wait_strengths(ex, STEPS)
    full = strengths(ex)
    assert all(v > 0 for v in full), full  # the control acts at every step of a full window
    assert ex.root.locator(".nbd-cstrip rect.nbd-cacts").count() == STEPS
    assert f"control acts at steps 1–{STEPS} of {STEPS}" in ex.root.locator(".nbd-ctext").text_content()
    ex.screenshot(screenshots / "control_done.png")
    # The run read the drawing: the control picture's thumbnail has the strokes, on the left.
    left, right = ex.root.locator(".nbd-controlpic").evaluate(THUMB_JS)
    assert left > 20 and right < left / 4, (left, right)

    # The window: control from half way on only.
    set_range(ex, "Control start", 0.5)
    ex.click("Generate")
    wait_strengths(ex, STEPS, "s[0] === 0 && root.dataset.status === 'done'")
    half = strengths(ex)
    assert half[: STEPS // 2] == [0] * (STEPS // 2) and all(v > 0 for v in half[STEPS // 2:]), half
    ex.screenshot(screenshots / "control_window.png")

    # What if no control from step 16: a branch with control scale 0 for the rest.
    ex.press_on_slider("End")
    for _ in range(STEPS - 16):
        ex.press_on_slider("ArrowLeft")
    assert ex.position() == f"16 / {STEPS}"
    ex.click("No control from here")
    wait_strengths(ex, STEPS, "s[n - 1] === 0 && s[15] > 0 && root.dataset.status === 'done'")
    branched = strengths(ex)
    assert branched[:16] == half[:16] and branched[16:] == [0] * (STEPS - 16), branched
    assert ex.root.locator(".nbd-control-sliders output").first.text_content() == "0.00"  # the scale it ran with
    assert ex.root.locator(".nbd-error").is_hidden()
    ex.screenshot(screenshots / "control_branch.png")

    # Guess mode: tick the box, the whole window at scale 1 again; the strip's line says how it ran.
    set_range(ex, "Control scale", 1.0)
    set_range(ex, "Control start", 0.0)
    ex.root.locator("input[aria-label='Guess mode']").check()
    ex.click("Generate")
    wait_strengths(ex, STEPS, "s.every((v) => v > 0) && root.dataset.status === 'done'")
    assert "in guess mode" in ex.root.locator(".nbd-ctext").text_content()
    assert strengths(ex) != full  # another run: the prompt's row alone, its pull growing down the blocks
    ex.screenshot(screenshots / "control_guess.png")

    # A file that is not a picture, uploaded as the control picture: refused, named in the widget.
    with page.expect_file_chooser() as chooser:
        ex.click("Upload a control picture")
    chooser.value.set_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"}])
    error = ex.root.locator(".nbd-error-text")
    error.wait_for(state="visible", timeout=60_000)
    print("refused upload:", error.text_content())
    assert "control picture: could not read" in error.text_content()
    error.scroll_into_view_if_needed()
    ex.root.locator(".nbd-error").screenshot(path=str(screenshots / "control_refused.png"))

    set_theme(page, "JupyterLab Dark")
    ex.root.evaluate("(root) => root.scrollIntoView({block: 'start'})")  # the controls, stage and strip
    ex.root.screenshot(path=str(screenshots / "control_dark.png"))


MULTI_CELLS = [
    "import io\nimport torch\nimport nbdiffuse as nbd\ntorch.set_num_threads(1)",
    # two ControlNets: the embedded model's outline one twice where it is shipped, else two tiny seeded ones
    "try:\n    pipe = nbd.load_pipeline(controlnet=['outline', 'outline'])\n"
    "except (nbd.EmbeddedModelMissing, nbd.PipelineLoadError):\n"
    "    from nbdiffuse.testing import tiny_controlnet_pipeline\n    pipe = tiny_controlnet_pipeline(nets=2)",
    "ex = nbd.Explorer(pipe, steps=12, prompt='red, white background')\nex",
    "def png(picture):\n    out = io.BytesIO()\n    picture.save(out, format='PNG')\n    return out.getvalue()\n"
    "open('star.png', 'wb').write(png(nbd.shapes.outline('star', 'on the left')))\n"
    "open('circle.png', 'wb').write(png(nbd.shapes.outline('circle', 'on the right')))",
]


def upload(ex, label, path):
    with ex.page.expect_file_chooser() as chooser:
        ex.click(label)
    chooser.value.set_files(str(path))


def test_two_controlnets_have_a_slot_each_and_an_empty_one_is_named(lab_server, page, explorer_page, screenshots,
                                                                    lab_notebook):
    notebook = lab_notebook("multi_control.ipynb", MULTI_CELLS)
    open_and_run_all(page, lab_server, notebook, workspace="nbd-multi-control")
    ex = explorer_page(page).wait_visible()
    ex.root.locator(".nbd-control").wait_for(state="visible", timeout=180_000)
    slots = ex.root.locator(".nbd-control-slots .nbd-picture")
    assert slots.count() == 2
    assert ex.root.get_by_role("button", name="Upload control picture 2 of 2").is_visible()
    from polling import wait_for

    wait_for(lambda: (lab_server.root / "circle.png").is_file(), 120, "the last cell's pictures")
    upload(ex, "Upload control picture 2 of 2", lab_server.root / "circle.png")
    ex.root.locator(".nbd-picture[data-net='1'] .nbd-control-kind", has_text="picture").wait_for(timeout=60_000)
    ex.click("Generate")
    error = ex.root.locator(".nbd-error-text")
    error.wait_for(state="visible", timeout=60_000)
    assert "control picture 1 of 2 is missing" in error.text_content()
    upload(ex, "Upload control picture 1 of 2", lab_server.root / "star.png")
    ex.root.locator(".nbd-picture[data-net='0'] .nbd-control-kind", has_text="picture").wait_for(timeout=60_000)
    ex.click("Generate")
    ex.wait_count("done")
    wait_strengths(ex, 12, "s.every((v) => v > 0)")
    assert ex.root.locator(".nbd-error").is_hidden()
    title = ex.root.locator(".nbd-cstrip rect title").first.text_content()
    assert "(scale 1 / 1)" in title, title  # each ControlNet's scale
    # each ControlNet has its own sliders by its picture; the one set of sliders is for a single ControlNet
    assert ex.root.locator("input[aria-label='Control scale']").is_hidden()
    set_range(ex, "Control scale 2 of 2", 0.5)
    set_range(ex, "Control end 1 of 2", 0.5)
    ex.click("Generate")
    ex.page.wait_for_function(
        "(root) => root.dataset.status === 'done' && (root.querySelector('.nbd-cstrip rect title') || {}).textContent"
        "?.includes('(scale 1 / 0.5)')", arg=ex.root.element_handle(), timeout=180_000)
    ex.screenshot(screenshots / "control_multi.png")
    ex.root.get_by_role("button", name="Remove control picture 2 of 2").click()
    ex.root.locator(".nbd-picture[data-net='1'] .nbd-picture-controls").wait_for(state="hidden", timeout=60_000)
    assert ex.root.locator(".nbd-picture[data-net='0'] .nbd-picture-controls").is_visible()
    set_theme(page, "JupyterLab Dark")
    ex.root.evaluate("(root) => root.scrollIntoView({block: 'start'})")
    ex.root.screenshot(path=str(screenshots / "control_multi_dark.png"))


ZOO = Path(__file__).resolve().parents[1] / "pipeline_zoo"  # the matrix's builders: a tiny ControlNet-XS pipeline
OWN_LOOP_CELLS = [
    f"import sys\nsys.path.insert(0, {str(ZOO)!r})\nimport torch\nimport nbdiffuse as nbd\nimport builders_control\n"
    "torch.set_num_threads(1)\npipe = builders_control.sd_controlnet_xs()",
    "ex = nbd.Explorer(pipe, steps=4, height=32, width=32, prompt='a red circle')\nex",
    "from PIL import Image\nImage.effect_noise((32, 32), 64).convert('RGB').save('noise.png')",
]


def test_a_controlnet_pipeline_that_runs_its_own_loop_says_what_it_cannot_show(lab_server, page, explorer_page,
                                                                              screenshots, lab_notebook):
    from polling import wait_for

    notebook = lab_notebook("own_loop_control.ipynb", OWN_LOOP_CELLS)
    open_and_run_all(page, lab_server, notebook, workspace="nbd-own-loop-control")
    ex = explorer_page(page).wait_visible()
    ex.root.locator(".nbd-control").wait_for(state="visible", timeout=180_000)
    wait_for(lambda: (lab_server.root / "noise.png").is_file(), 120, "the last cell's picture")
    upload(ex, "Upload a control picture", lab_server.root / "noise.png")
    ex.root.locator(".nbd-control-kind", has_text="picture").wait_for(timeout=60_000)
    ex.click("Generate")
    ex.wait_count("done")
    line = ex.root.locator(".nbd-ctext span").first
    line.wait_for(state="visible", timeout=60_000)
    text = line.text_content()
    assert "control at scale 1, window 0–1" in text and "strength per step is not seen" in text, text
    assert ex.root.locator(".nbd-cstrip").is_hidden() and ex.root.get_by_role("button", name="No control from here").is_hidden()
    assert ex.root.locator(".nbd-error").is_hidden()
    assert ex.root.get_by_role("button", name="decision curve").is_disabled()  # it continues runs from their x0
    set_theme(page, "JupyterLab Dark")
    line.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "control_own_loop_dark.png"))


FLUX_CELLS = [
    "import torch\nimport nbdiffuse as nbd\nfrom nbdiffuse.testing import tiny_flux_controlnet_pipeline\n"
    "torch.set_num_threads(1)\npipe = tiny_flux_controlnet_pipeline(union=True)",
    "ex = nbd.Explorer(pipe, steps=6, height=32, width=32, prompt='a red circle')\nex",
    "from PIL import Image\nImage.effect_noise((32, 32), 64).convert('RGB').save('noise.png')",
]


def test_a_flux_union_controlnet_shows_its_strength_per_step_and_its_kind(lab_server, page, explorer_page, screenshots,
                                                                         lab_notebook):
    """Flux's ControlNet runs in nbdiffuse's own loop: the strip shows its strength per step, "No control from
    here" branches, and the guess mode box (SD's and SDXL's only) is not offered. A union ControlNet's slot asks
    which kind of picture it is; Generate without one names control_mode."""
    from polling import wait_for

    notebook = lab_notebook("flux_control.ipynb", FLUX_CELLS)
    open_and_run_all(page, lab_server, notebook, workspace="nbd-flux-control")
    ex = explorer_page(page).wait_visible()
    ex.root.locator(".nbd-control").wait_for(state="visible", timeout=180_000)
    assert ex.root.locator("input[aria-label='Guess mode']").is_hidden()
    wait_for(lambda: (lab_server.root / "noise.png").is_file(), 120, "the last cell's picture")
    upload(ex, "Upload a control picture", lab_server.root / "noise.png")
    ex.root.locator(".nbd-control-kind", has_text="picture").wait_for(timeout=60_000)
    set_range(ex, "Control end", 0.5)
    kind = ex.root.locator("select[aria-label='Kind of control picture']")
    assert kind.is_visible() and kind.locator("option").count() == 4  # "kind of picture…" and kinds 0 to 2
    ex.click("Generate")
    ex.root.locator(".nbd-error", has_text="control_mode").wait_for(timeout=60_000)
    kind.select_option("2")
    ex.click("Generate")
    wait_strengths(ex, 6)
    ex.wait_count("done")
    values = strengths(ex)
    assert all(v > 0 for v in values[:3]) and values[3:] == [0, 0, 0], values  # the window's half
    text = ex.root.locator(".nbd-ctext span").first.text_content()
    assert "strength per step is not seen" not in text and "kind 2" in text, text
    ex.screenshot(screenshots / "control_flux.png")
    ex.root.get_by_role("button", name="No control from here").wait_for(state="visible", timeout=60_000)
    set_theme(page, "JupyterLab Dark")
    ex.root.locator(".nbd-ctext span").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "control_flux_dark.png"))
