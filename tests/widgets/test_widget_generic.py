"""Explorer with a pipeline outside the known families (AltDiffusionPipeline): live x0 and x_t frames (x0 read
from what its sampler is given); what-if, branching and live guidance off, with one line saying why. No browser:
a HeadlessFrontend."""
from __future__ import annotations

import pytest
import torch

from nbdiffuse.widgets.frames import LOSSLESS_TYPE, mime_type
from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.headless import HeadlessFrontend

WHY = ("This pipeline (AltDiffusionPipeline) runs its own loop: nbdiffuse reads each step's x_t and x0 from its "
       "sampler, not the (cond, uncond) pair, so what-if, branching and live guidance need a family nbdiffuse "
       "knows (SD, SDXL, SD3, Flux, PixArt).")


@pytest.fixture
def generic_explorer(generic_pipe, open_explorer):
    # tqdm's monitor is one process-wide daemon that tqdm starts itself, not the widget's
    return open_explorer(generic_pipe, ignore_threads=("tqdm_monitor",), steps=6)


def test_the_widget_says_what_it_cannot_do_and_why(generic_explorer):
    ex, fe = generic_explorer
    caps = fe.state["capabilities"]
    assert caps["x0"] is True and caps["what_if"] is False and caps["branch"] is False
    assert caps["live_guidance"] is False and caps["previews"] is True
    assert fe.state["capabilities_note"] == WHY
    assert fe.state["view"] == "both"
    assert fe.state["image_size"] == [16, 16] and fe.state["guidance"] == 7.5  # the pipeline's own defaults


def test_generate_streams_live_xt_frames_and_keeps_every_step(generic_explorer, generic_pipe):
    ex, fe = generic_explorer
    fe.click("generate")
    assert ex.wait(120)
    assert fe.state["status"] == "done" and fe.state["error"] == ""
    assert fe.state["n_steps"] == 6 and len(fe.state["frames_xt"]) == 6
    for view in ("x0", "xt"):  # per step, lossless
        assert all(mime_type(frame) == LOSSLESS_TYPE for frame in fe.state[f"frames_{view}"])
    assert sorted(fe.state["full_frames"]) == ["5:x0", "5:xt"]
    assert fe.frames, "no live frame was sent"
    for content, buffers in fe.customs:
        if content.get("type") == "frame":
            assert mime_type(buffers[0]) == mime_type(buffers[1]) == LOSSLESS_TYPE
    traj = ex.trajectory
    generator = torch.Generator("cpu").manual_seed(traj.params["seed"])
    own = generic_pipe(prompt=traj.params["prompt"], num_inference_steps=6, guidance_scale=7.5, generator=generator,
                   output_type="latent").images[0]
    assert torch.equal(traj[-1].latents, own)
    assert ex.runs and mime_type(ex.run_thumbs[0]) == LOSSLESS_TYPE  # the run tree shows its last x_t


def test_what_if_branch_and_continue_are_refused_in_the_widget(generic_explorer):
    ex, fe = generic_explorer
    ex.generate(steps=3)
    assert ex.wait(120)
    with pytest.raises(ValueError, match="a what-if needs a family"):
        ex.what_if(3.0)
    with pytest.raises(ValueError, match="branching needs a family"):
        ex.branch(0)
    for message in ({"type": "whatif", "run": ex.run_id, "k": 1, "g": 3.0},
                    {"type": "branch", "k": 0}, {"type": "continue", "k": 0, "g": 3.0}):
        fe.send(message)  # what a browser with old front-end code might still send
        assert "a family nbdiffuse knows" in ex.error
    assert len(ex.history) == 1


def test_guidance_changes_mid_run_do_not_steer_it(generic_explorer, wait_for):
    ex, fe = generic_explorer
    ex.generate(steps=200, guidance=2.0)
    wait_for(lambda: ex.trajectory is not None and len(ex.trajectory) >= 2, 60, "two steps")
    fe.set(guidance=5.0)  # the browser disables the slider during a run; the kernel ignores it too
    n = len(ex.trajectory)
    wait_for(lambda: len(ex.trajectory) >= min(n + 3, 200), 60, "three more steps")
    ex.stop()
    assert ex.wait(120)
    assert set(ex.trajectory.guidances) == {2.0} and ex.error == ""


def test_stop_keeps_the_steps_done(generic_explorer, wait_for):
    ex, fe = generic_explorer
    ex.generate(steps=200)
    wait_for(lambda: ex.trajectory is not None and len(ex.trajectory) >= 2, 60, "two steps")
    fe.click("stop")
    assert ex.wait(120)
    n = len(ex.trajectory)
    assert fe.state["status"] == "stopped" and 2 <= n < 200 and fe.state["n_steps"] == n
    assert len(fe.state["frames_xt"]) == n


def test_exports_and_workshop_mode_of_a_generic_run(generic_explorer, tmp_path):
    ex, fe = generic_explorer
    ex.generate(steps=3)
    assert ex.wait(120)
    png = ex.export("png", tmp_path / "a.png")
    gif = ex.export("gif", tmp_path / "a.gif")
    saved = ex.export("nbd", tmp_path / "a.nbd")
    assert png.stat().st_size and gif.stat().st_size
    shop = Explorer.from_files([saved])
    try:
        fe2 = HeadlessFrontend(shop)
        assert fe2.state["capabilities"]["x0"] is True and fe2.state["capabilities"]["branch"] is False
        assert "runs its own loop" in fe2.state["capabilities_note"]
        assert len(fe2.state["frames_xt"]) == len(fe2.state["frames_x0"]) == 3
        fe2.close()
    finally:
        shop.close()


def test_compare_of_watched_runs_compares_their_x0_or_their_noisy_latents(generic_explorer):
    ex, fe = generic_explorer
    for seed in (1, 2):
        ex.generate(steps=4, seed=seed)
        assert ex.wait(120)
    fe.send({"type": "compare", "a": ex.history[0].id, "b": ex.history[1].id})
    info = fe.state["comparison"]
    assert fe.state["error"] == "" and info["view"] == "x0" and len(info["pairs"]) == 4
    assert fe.state["compare_b"] == fe.state["frames_x0"]  # run b is the one shown: its x0 frames, step by step
    assert all(d > 0 for d in info["difference"])  # two seeds: different pictures at every step
    assert len(fe.state["compare_heat"]) == 4
    ex.compare(view="xt")
    assert fe.state["comparison"]["view"] == "xt" and fe.state["compare_b"] == fe.state["frames_xt"]
    with pytest.raises(ValueError, match="view"):
        ex.compare(view="x1")


def test_a_known_family_keeps_every_capability(pipe):
    ex = Explorer(pipe, steps=3)
    try:
        assert all(v for k, v in ex.capabilities.items() if k != "control") and ex.capabilities_note == "" and ex.view == "both"
    finally:
        ex.close()


def test_the_widgets_what_if_on_a_distilled_run_says_to_branch(flux_pipe, open_explorer):
    """Flux-dev takes guidance as an input: x0 is there, a what-if is not, and the widget says why."""
    ex, fe = open_explorer(flux_pipe, ignore_threads=("tqdm_monitor",), steps=2)
    ex.generate(steps=2)
    assert ex.wait(120) and ex.trajectory.capabilities["x0"] and not ex.trajectory.capabilities["what_if"]
    fe.send({"type": "whatif", "run": ex.run_id, "k": 1, "g": 3.0})
    assert "takes guidance as an input" in ex.error and "branch" in ex.error


def test_generate_passes_pipe_kwargs_and_a_family_refuses_those_its_loop_ignores(generic_explorer, pipe):
    ex, _ = generic_explorer
    ex.generate(steps=2, pipe_kwargs={"guidance_rescale": 0.5})
    assert ex.wait(120) and ex.trajectory.params["pipe_kwargs"] == {"guidance_rescale": 0.5}
    family = Explorer(pipe)
    try:
        with pytest.raises((TypeError, ValueError), match="pag_scale"):
            family.generate(steps=2, pipe_kwargs={"pag_scale": 2.0})
    finally:
        family.close()
