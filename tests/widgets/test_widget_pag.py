"""A PAG pipeline in the Explorer (pag_panel.py): the PAG slider reaches Generate and "Branch here", the shown
run's PAG per step comes to the page, and the what-if re-weighs PAG (no browser)."""
from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
from polling import hold


@pytest.fixture
def pag_explorer(pag_pipe, open_explorer):
    return open_explorer(pag_pipe, steps=4, guidance=5.0, prompt="a red circle")


def test_the_pag_slider_reaches_generate_and_the_run_comes_back_with_its_pag(pag_explorer, pipe, open_explorer):
    ex, fe = pag_explorer
    assert fe.state["pag_available"] is True and fe.state["pag_scale"] == 3.0  # the pipeline's own default
    fe.set(pag_scale=1.5)
    ex.generate(background=False)
    traj = ex.trajectory
    assert traj.params["pag"]["scale"] == 1.5 and fe.state["pag_used"] == [1.5] * 4
    assert "guidance 5, PAG 1.5," in fe.state["runs"][0]["changed"]
    same = nbd.trace(ex.pipe, "a red circle", steps=4, guidance=5.0, seed=ex.seed, pipe_kwargs={"pag_scale": 1.5})
    assert torch.equal(traj[-1].latents, same[-1].latents)
    ex.generate(background=False, pipe_kwargs={"pag_scale": 0.5})  # pipe_kwargs win, and the slider shows what ran
    assert ex.trajectory.params["pag"]["scale"] == 0.5 and fe.state["pag_scale"] == 0.5
    with pytest.raises(ValueError, match="pag_scale must be a number from 0 to 100, got -1"):
        ex.pag_scale = -1.0
    plain, plain_fe = open_explorer(pipe)
    assert plain_fe.state["pag_available"] is False and plain_fe.state["pag_used"] == []


def test_what_if_pag_and_branch_here_with_another_pag(pag_explorer, wait_for):
    ex, fe = pag_explorer
    ex.generate(background=False)
    traj = ex.trajectory
    fe.send({"type": "whatif", "run": ex.run_id, "k": 1, "g": 5.0, "p": 0.0, "decoder": "full"})
    wait_for(lambda: any(c.get("type") == "whatif" for c, _ in fe.customs), what="the what-if frame")
    content, buffers = [(c, b) for c, b in fe.customs if c.get("type") == "whatif"][-1]
    assert content["p"] == 0.0 and content["g"] == 5.0
    want = traj.guided_image(1, 5.0, decoder="full", pag_scale=0.0)
    assert Image.open(io.BytesIO(buffers[0])).convert("RGB").tobytes() == want.tobytes()
    assert want.tobytes() != traj.image(1, "x0", decoder="full").tobytes()
    fe.set(pag_scale=0.0, frame=1)
    fe.send({"type": "branch", "k": 1})  # "Branch here": the PAG slider differs from the shown run's
    assert ex.wait(120) and len(ex.history) == 2
    child = ex.trajectory
    assert child.params["pag"]["scale"] == 0.0 and [s.pag_scale for s in child] == [3.0, 3.0, 0.0, 0.0]
    assert fe.state["pag_used"] == [3.0, 3.0, 0.0, 0.0] and "PAG 3 → 0" in fe.state["runs"][1]["changed"]
    ex.load_run(traj)
    fe.send({"type": "continue", "k": 2, "g": 5.0, "p": 1.0})  # "Continue from here" with the what-if's PAG
    assert ex.wait(120) and [s.pag_scale for s in ex.trajectory] == [3.0, 3.0, 3.0, 1.0]
    fe.send({"type": "whatif", "run": ex.run_id, "k": 1, "g": 5.0, "p": "x"})  # a bad request from the page
    assert "what-if pag_scale" in ex.error


def test_the_pag_slider_moved_during_a_run_steers_its_next_steps_and_branches_replay_them(pag_explorer, wait_for):
    ex, fe = pag_explorer
    ex.generate(steps=40)
    hold(fe, ex, 2)
    n = len(ex.trajectory)
    fe.set(pag_scale=0.5)  # moved while held: the next step asks it, and the held frame's state leaves it there
    fe.click("step")
    wait_for(lambda: fe.state["status"] == "paused" and fe.state["n_steps"] == n + 1, what="one more step")
    assert fe.state["pag_scale"] == 0.5 and ex.trajectory[n].pag_scale == 0.5
    fe.click("stop")
    assert ex.wait(120)
    traj = ex.trajectory
    assert traj.params["pag"]["scales"][: n + 1] == [3.0] * n + [0.5] and fe.state["pag_used"][n] == 0.5
    assert f"PAG 3, 0.5 from step {n + 1}" in fe.state["runs"][0]["changed"]
    fe.send({"type": "branch", "k": n - 1})  # the slider (0.5) is what step n asked: no change, a replay
    assert ex.wait(120)
    assert ex.trajectory.params["pag"]["scales"][:n + 1] == traj.params["pag"]["scales"][:n + 1]
    assert torch.equal(ex.trajectory[n].latents, traj[n].latents)
    assert fe.state["pag_scale"] == 3.0  # its last step's: past where the parent stopped, its plan (as guidance)
    fe.set(pag_scale=0.5)
    fe.send({"type": "branch", "k": 0})  # step 1 asked 3: the slider's 0.5 from step 1 on
    assert ex.wait(120) and ex.trajectory.params["pag"]["scales"][:3] == [3.0, 0.5, 0.5]


def test_a_pipeline_that_reads_pag_once_notes_the_slider_as_ignored(open_explorer, wait_for):
    from diffusers import HunyuanDiTPAGPipeline

    from nbdiffuse.testing import tiny_hunyuan_dit_pipeline

    pipe = HunyuanDiTPAGPipeline(**tiny_hunyuan_dit_pipeline().components, pag_applied_layers="blocks.1",
                                 requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ex, fe = open_explorer(pipe, ignore_threads=("tqdm_monitor",), steps=30, guidance=5.0, prompt="a red circle")
    assert fe.state["pag_available"] is True
    ex.generate()
    hold(fe, ex, 1)
    fe.set(pag_scale=1.0)  # held: the run is surely still going
    fe.click("resume")
    assert ex.wait(120) and ex.status == "done"
    assert any(n.startswith("live PAG scale ignored") for n in ex.trajectory.notices)


def test_continue_from_an_adaptive_pag_runs_what_if_goes_on_from_the_pag_it_showed(pag_explorer):
    """An adaptive scale lowers what each step asks: the what-if's PAG is the step's own (`pag_used`), so Continue
    asks what gives it at that step, and the branch's PAG then falls as the run's did (not from a lower start)."""
    ex, fe = pag_explorer
    ex.generate(background=False, pipe_kwargs={"pag_scale": 3.0, "pag_adaptive_scale": 0.001})
    parent = ex.trajectory
    used = fe.state["pag_used"]
    assert 3.0 > used[0] > used[1] > used[2] > used[3] > 0  # lowered more as the noise goes
    ex.continue_from(5.0, 1, background=False, pag_scale=used[1])  # the what-if left at the step's own PAG
    same = ex.trajectory
    assert [s.pag_scale for s in same] == pytest.approx(used, abs=1e-4)
    assert torch.allclose(same[-1].latents, parent[-1].latents, atol=1e-4)
    ex.load_run(parent)
    ex.continue_from(5.0, 1, background=False, pag_scale=used[1] + 1.0)  # one more than the step showed
    more = [s.pag_scale for s in ex.trajectory]
    assert more[:2] == used[:2] and more[2:] == pytest.approx([u + 1.0 for u in used[2:]], abs=1e-4)
    assert ex.trajectory.params["pag"]["scale"] == pytest.approx(3.0 + 1.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"pag_scale: PAG 99.8 at step 1 needs a pag_scale of 100.29.* past the largest, 100"):
        ex.continue_from(5.0, 1, background=False, pag_scale=99.8)
