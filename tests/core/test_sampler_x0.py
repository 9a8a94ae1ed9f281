"""The x0 a run records is the one its sampler goes on with (core/prediction.py, `as_sampler_goes_on`): clipped where
the sampler clips (clip_sample), thresholded where it thresholds, as it is where its class does neither, whatever
keys its config carries from the sampler it was made from."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler

import nbdiffuse as nbd
from nbdiffuse.core.generic import prepare_generic
from nbdiffuse.core.prediction import as_sampler_goes_on

PROMPT = "a red circle"


def first_x0(pipe, scheduler, family=True):
    if family:
        traj = nbd.trace(pipe, PROMPT, steps=4, guidance=5.0, seed=1, height=32, width=32, scheduler=scheduler)
    else:
        traj = prepare_generic(pipe, PROMPT, "", 4, 5.0, 1, scheduler, 32, 32).execute()
    return traj, traj[0].pred_x0.float()


@pytest.mark.parametrize("family", [True, False], ids=["family", "watched"])
def test_a_clipping_sampler_records_the_clipped_x0(sd_pipe, family):
    _, free = first_x0(sd_pipe, DDIMScheduler.from_config(sd_pipe.scheduler.config, clip_sample=False), family)
    _, clipped = first_x0(sd_pipe, DDIMScheduler.from_config(sd_pipe.scheduler.config, clip_sample=True,
                                                             clip_sample_range=0.5), family)
    assert free.abs().max() > 0.5  # the clip acts at this step
    assert torch.equal(clipped, free.clamp(-0.5, 0.5))


def test_a_thresholding_sampler_records_the_thresholded_x0(sd_pipe):
    free_sched = DDPMScheduler.from_config(sd_pipe.scheduler.config, clip_sample=False)
    sched = DDPMScheduler.from_config(sd_pipe.scheduler.config, clip_sample=False, thresholding=True,
                                      dynamic_thresholding_ratio=0.9, sample_max_value=1.5)
    _, free = first_x0(sd_pipe, free_sched)
    _, held = first_x0(sd_pipe, sched)
    assert free.abs().max() > 1.5 and held.abs().max() <= 1.0 + 1e-6  # dynamic thresholding scales into [-1, 1]
    assert torch.equal(held, sched._threshold_sample(free[None])[0])  # a step records x0 without the batch axis


@pytest.mark.parametrize("family", [True, False], ids=["family", "watched"])
def test_a_clip_setting_the_sampler_does_not_take_is_not_applied(sd_pipe, family):
    """from_config keeps every key of the config it was made from: Euler made from a clipping DDIM's config carries
    clip_sample True and never clips. Its last x0 is then the picture the run ends on (sigma 0 there)."""
    ddim = DDIMScheduler.from_config(sd_pipe.scheduler.config, clip_sample=True, clip_sample_range=0.5)
    euler = EulerDiscreteScheduler.from_config(ddim.config)
    assert euler.config.get("clip_sample")
    traj, x0 = first_x0(sd_pipe, euler, family)
    assert x0.abs().max() > 0.5
    assert torch.allclose(traj[-1].pred_x0.float(), traj.final_latents.float(), atol=1e-4)


def test_a_pixart_ddim_runs_last_x0_is_the_picture_it_ends_on(pixart_pipe):
    """PixArt checkpoints ship DDIMScheduler() (clip_sample on, to 1 in the latent space): its last step's x0, the
    clipped one, is the latents the run ends on (alpha at 1 after the last step), where the unclipped one was not."""
    from diffusers import PixArtSigmaPipeline

    pipe = PixArtSigmaPipeline(**{**pixart_pipe.components, "scheduler": DDIMScheduler(set_alpha_to_one=True)})
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=4.5, seed=1)
    assert traj[-1].pred_x0.float().abs().max() <= 1.0
    assert torch.allclose(traj[-1].pred_x0.float(), traj.final_latents.float(), atol=1e-5)


def test_as_sampler_goes_on_leaves_samplers_that_do_neither():
    x0 = torch.linspace(-3, 3, 16).reshape(1, 1, 4, 4)
    assert as_sampler_goes_on(EulerDiscreteScheduler(), x0) is x0
    assert as_sampler_goes_on(DDIMScheduler(clip_sample=False), x0) is x0
    assert torch.equal(as_sampler_goes_on(DDIMScheduler(clip_sample=True, clip_sample_range=2.0), x0), x0.clamp(-2, 2))
