"""What a learner sees while a run goes is what the model makes: live frames in JupyterLab, in color."""
from __future__ import annotations

import re

import numpy as np
import pytest

from lab_driver import open_and_run_all

pytestmark = pytest.mark.browser

STEPS = 40
PROMPT = "big green star at the top, black background"
# Every distinct x0 picture the page paints during the run, with the counter and the frame's kind tag.
RECORD_JS = """
(root) => {
  const canvas = root.querySelector('canvas[data-view="x0"]');
  const tag = root.querySelector('.nbd-pane[data-view="x0"] .nbd-kind');
  const count = root.querySelector('.nbd-count');
  window.__nbdPainted = [];
  let last = '';
  const tick = () => {
    if (canvas.width) {
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let h = 2166136261;
      for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i], 16777619);
      const key = `${h >>> 0}`;
      if (key !== last) {
        last = key;
        window.__nbdPainted.push({ count: count.textContent, kind: tag.hidden ? '' : tag.dataset.kind,
                                   width: canvas.width, height: canvas.height, data: Array.from(data) });
      }
    }
    if (window.__nbdPainted.length < 400) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}
"""


def test_a_live_frame_at_60_percent_already_has_the_object_colour(lab_server, lab_notebook, page, explorer_page,
                                                                   screenshots):
    path = lab_notebook("true_frames.ipynb", [
        "import torch\nimport nbdiffuse as nbd\ntorch.set_num_threads(1)",
        f"ex = nbd.Explorer(prompt={PROMPT!r}, steps={STEPS}, seed=0)\nex",
    ])
    open_and_run_all(page, lab_server, path, workspace="nbd-true-frames")
    ex = explorer_page(page).wait_visible()
    ex.root.evaluate(RECORD_JS)
    ex.click("Generate")
    ex.wait_steps(STEPS // 2, STEPS)
    ex.screenshot(screenshots / "true_frames_running.png")
    ex.wait_count("done")
    page.wait_for_function("(root) => root.querySelector('.nbd-pane[data-view=\"x0\"] .nbd-kind').hidden",
                           arg=ex.root.element_handle())  # the final frame is the VAE's own
    ex.screenshot(screenshots / "true_frames_done.png")
    final = ex.pixels("x0").astype(np.int32)
    painted = page.evaluate("() => window.__nbdPainted")

    import re

    live = []
    for item in painted:
        match = re.search(r"step (\d+) / (\d+)", item["count"])
        if match and item["kind"] == "tiny" and not item["count"].endswith("done"):
            pixels = np.asarray(item["data"], np.int32).reshape(item["height"], item["width"], 4)[..., :3]
            live.append((int(match.group(1)), pixels))
    assert live, "no live frame drawn by the tiny decoder was painted"
    # Live frames come at the output size (64 x 64), not as 16 x 16 latent blocks.
    assert all(pixels.shape == final.shape for _, pixels in live)
    step, frame = min(live, key=lambda item: abs(item[0] - 0.6 * STEPS))
    assert abs(step - 0.6 * STEPS) <= 0.15 * STEPS, [k for k, _ in live]

    background = np.median(final.reshape(-1, 3)[:64], axis=0)  # the top row: the black background
    mask = np.abs(final - background).sum(-1) > 150  # the star
    assert 30 < mask.sum() < final.shape[0] * final.shape[1] / 2
    core = mask.copy()  # its inside: the outline is still moving at 60% of the run
    for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        core &= np.roll(mask, shift, (0, 1))
    final_color = np.median(final[core], axis=0)
    live_color = np.median(frame[core], axis=0)
    assert final_color[1] > 120 and final_color[0] < 90, final_color  # green, as the model draws it
    # The object's colour at 60% of the run is already the final one, within a few levels (6 when
    # measured: the olive 102, 103, 44 that latent-size approx frames showed was 70 off).
    assert np.abs(live_color - final_color).max() <= 8, (step, live_color, final_color)


def test_workshop_mode_shows_the_saved_pictures_of_the_model(lab_server, lab_notebook, page, explorer_page,
                                                             screenshots, tmp_path):
    """A run saved with its pictures opens without its model and shows its VAE's frames, at the output size."""
    import nbdiffuse as nbd
    from nbdiffuse.widgets.frames import decode_frame

    pipe = nbd.load_pipeline()
    traj = nbd.trace(pipe, PROMPT, steps=12, guidance=5.0, seed=0)
    saved = lab_server.root / "workshop_run.nbd"
    traj.save(saved)
    path = lab_notebook("workshop_frames.ipynb", [
        "import nbdiffuse as nbd",
        "ex = nbd.Explorer.from_files(['workshop_run.nbd'])\nex",
    ])
    open_and_run_all(page, lab_server, path, workspace="nbd-workshop-frames")
    ex = explorer_page(page).wait_visible()
    ex.wait_count("done")
    page.wait_for_function("(root) => root.querySelector('canvas[data-view=\"x0\"]').width === 64",
                           arg=ex.root.element_handle())
    ex.screenshot(screenshots / "true_frames_workshop.png")
    loaded = nbd.Trajectory.load(saved)
    assert ex.root.locator('.nbd-pane[data-view="x0"] .nbd-kind').is_hidden()  # the VAE's own pictures
    assert (ex.pixels("x0") == decode_frame(loaded.saved_frame(11, "x0"))).all()
    last = ex.frame_hash()
    ex.press_on_slider("Home")
    ex.wait_frame_change(last)
    first = ex.pixels("x0")
    assert first.shape == (64, 64, 3) and (first == decode_frame(loaded.saved_frame(0, "x0"))).all()
    rate = re.search(r"([\d.]+) it/s", ex.count_text())  # the run's own rate, kept in its file (30.0 is one)
    assert rate is not None and float(rate.group(1)) > 0, ex.count_text()
