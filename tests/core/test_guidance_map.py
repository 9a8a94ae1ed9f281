"""The guidance map: where prompt and negative prompt disagree, from the stored predictions alone."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.guidance_map import guidance_map


def test_guidance_map_is_the_distance_of_the_two_predictions(sd_pipe, unet_calls):
    traj = nbd.trace(sd_pipe, "a red circle", steps=3, guidance=4.0, seed=0)
    calls = unet_calls(sd_pipe)
    step = traj[1]
    m = guidance_map(traj, 1)
    assert calls.count == 0  # no model call
    expected = ((step.eps_cond - step.eps_uncond).float() * step.x0_coeff).reshape(-1, *m.shape).norm(dim=0)
    assert m.shape == tuple(traj[1].latents.shape[-2:]) and torch.allclose(m, expected.abs(), rtol=1e-4, atol=1e-6)
    assert (m > 0).any()


def test_the_trajectory_gives_it_too(sd_pipe):
    traj = nbd.trace(sd_pipe, "a red circle", steps=3, guidance=4.0, seed=0)
    assert torch.equal(traj.guidance_map(2), guidance_map(traj, 2))
    with pytest.raises(IndexError):
        traj.guidance_map(7)


def test_same_prompt_both_sides_gives_a_zero_map(sd_pipe):
    traj = nbd.trace(sd_pipe, "a red circle", negative_prompt="a red circle", steps=2, guidance=4.0, seed=0)
    assert float(guidance_map(traj, 0).max()) < 1e-4


def test_a_step_without_guidance_is_refused_saying_why(sd_pipe):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=1.0, seed=0)
    with pytest.raises(ValueError, match="ran without guidance"):
        guidance_map(traj, 0)
