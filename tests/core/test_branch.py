import pytest
import torch

import nbdiffuse as nbd

PROMPT = "small blue square at the top"


@pytest.mark.parametrize("name", ["euler", "euler_a", "heun", "lms", "ddim", "ddpm", "dpmpp_2m", "unipc", "deis"])
def test_branch_without_changes_replays_the_rest(sd_pipe, unet_calls, name):
    traj = nbd.trace(sd_pipe, PROMPT, steps=6, guidance=4.0, seed=5, scheduler=name)
    calls = unet_calls(sd_pipe)
    child = nbd.branch(sd_pipe, traj, at=2)
    # Only the remaining steps touch the model (Heun: two evaluations a step, one on the last).
    per_step = [1 + len(s.extra_outputs) for s in traj]
    assert calls.count == sum(per_step[3:])
    torch.testing.assert_close(child.final_latents, traj.final_latents, rtol=1e-5, atol=1e-5)
    assert len(child) == 6 and child.parent is traj and child.branched_at == 2
    assert child.params["parent"] == traj.id and child.params["branched_at"] == 2
    assert child.steps[:3] == traj.steps[:3]


def test_branch_sd3_replays_and_replans(sd3_pipe):
    traj = nbd.trace(sd3_pipe, PROMPT, steps=5, guidance=4.0, seed=1)
    child = nbd.branch(sd3_pipe, traj, at=1)
    torch.testing.assert_close(child.final_latents, traj.final_latents, rtol=1e-5, atol=1e-5)
    heun = nbd.branch(sd3_pipe, traj, at=1, scheduler="heun", guidance=7.0)
    assert heun.params["scheduler"] == "heun" and torch.isfinite(heun.final_latents).all()


def test_branch_sdxl_replays(sdxl_pipe):
    traj = nbd.trace(sdxl_pipe, PROMPT, steps=4, guidance=4.0, seed=1, scheduler="dpmpp_2m")
    child = nbd.branch(sdxl_pipe, traj, at=1)
    torch.testing.assert_close(child.final_latents, traj.final_latents, rtol=1e-5, atol=1e-5)


def test_branch_with_changes(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=6, guidance=4.0, seed=5)
    prompt = nbd.branch(sd_pipe, traj, at=1, prompt="big green star")
    assert prompt.params["prompt"] == "big green star"
    assert not torch.allclose(prompt.final_latents, traj.final_latents)
    guided = nbd.branch(sd_pipe, traj, at=2, guidance=9.0)
    assert guided.guidances == [4.0, 4.0, 4.0, 9.0, 9.0, 9.0]
    rest = nbd.branch(sd_pipe, traj, at=2, guidance=[1.0, 2.0, 3.0])
    assert rest.guidances == [4.0, 4.0, 4.0, 1.0, 2.0, 3.0]
    renamed = nbd.branch(sd_pipe, traj, at=2, scheduler="dpmpp_2m")
    assert renamed.params["scheduler"] == "dpmpp_2m" and len(renamed) >= 4
    assert torch.isfinite(renamed.final_latents).all()
    longer = nbd.branch(sd_pipe, traj, at=2, steps=12)
    assert len(longer) > 6 and longer.params["steps"] == len(longer)


def test_new_seed_changes_an_ancestral_sampler_only_after_the_branch(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=6, seed=5, scheduler="euler_a")
    same = nbd.branch(sd_pipe, traj, at=2, seed=5)
    other = nbd.branch(sd_pipe, traj, at=2, seed=6)
    torch.testing.assert_close(same.final_latents, traj.final_latents)
    assert not torch.allclose(other.final_latents, traj.final_latents)
    assert other.params["seed"] == 6 and torch.equal(other[2].latents, traj[2].latents)


def test_branch_resumes_a_stopped_run(sd_pipe):
    full = nbd.trace(sd_pipe, PROMPT, steps=6, seed=5, scheduler="dpmpp_2m")
    control = nbd.RunControl()
    stopped = nbd.trace(sd_pipe, PROMPT, steps=6, seed=5, scheduler="dpmpp_2m", control=control,
                        on_step=lambda t, s: control.stop() if s.index == 2 else None)
    assert stopped.stopped and len(stopped) == 3
    resumed = nbd.branch(sd_pipe, stopped, at=2)
    assert len(resumed) == 6 and not resumed.stopped
    torch.testing.assert_close(resumed.final_latents, full.final_latents, rtol=1e-5, atol=1e-5)


def test_branch_of_a_loaded_trajectory(sd_pipe, tmp_path):
    traj = nbd.trace(sd_pipe, PROMPT, steps=5, seed=5, scheduler="unipc")
    traj.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd", pipe=sd_pipe)
    child = nbd.branch(sd_pipe, loaded, at=1)
    torch.testing.assert_close(child.final_latents, traj.final_latents, rtol=1e-5, atol=1e-5)


def test_branch_bad_input(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=4, seed=5)
    for at in (-1, 4, 99, 1.5, None):
        with pytest.raises(ValueError, match="at must be"):
            nbd.branch(sd_pipe, traj, at=at)
    with pytest.raises(ValueError, match="nothing is left"):
        nbd.branch(sd_pipe, traj, at=3)
    with pytest.raises(TypeError, match="unknown change"):
        nbd.branch(sd_pipe, traj, at=1, guidence=3.0)
    with pytest.raises(ValueError, match="scheduler must be"):
        nbd.branch(sd_pipe, traj, at=1, scheduler="nope")
    with pytest.raises(TypeError, match="traj must be"):
        nbd.branch(sd_pipe, "traj", at=1)
    assert len(nbd.branch(sd_pipe, traj, at=1)) == 4  # the next call works
