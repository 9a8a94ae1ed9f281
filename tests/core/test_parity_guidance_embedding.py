"""Issue 21 B and C: guidance-embedding UNets (time_cond_proj_dim, LCM-distilled) take guidance as an input,
as diffusers runs them; and the generic path hands stochastic samplers the run's generator."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.capabilities import pipeline_capabilities
from nbdiffuse.testing import tiny_lcm_pipeline, tiny_sd_pipeline, tiny_sdxl_pipeline

PROMPT = "big red circle on the left"


@pytest.fixture(scope="module")
def lcm_sd():
    return tiny_sd_pipeline(seed=2, time_cond_proj_dim=32)


@pytest.fixture(scope="module")
def lcm_sdxl():
    return tiny_sdxl_pipeline(seed=3, time_cond_proj_dim=32)


def own(pipe, steps, guidance, seed, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                output_type="latent", **kw).images[0]


@pytest.mark.parametrize("which", ["lcm_sd", "lcm_sdxl"])
def test_a_guidance_embedding_unet_matches_pipe_bit_for_bit(which, request, model_calls):
    pipe = request.getfixturevalue(which)
    calls = model_calls(pipe.unet)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=6.0, seed=1)
    assert calls.count == 4  # one evaluation a step: no CFG
    assert torch.equal(traj.final_latents, own(pipe, 4, 6.0, 1))
    assert traj.params["guidance_kind"] == "distilled" and all(s.eps_uncond is None for s in traj)
    # guidance reaches the model: another value is another run
    assert not torch.equal(nbd.trace(pipe, PROMPT, steps=4, guidance=2.0, seed=1).final_latents, traj.final_latents)


def test_its_capabilities_say_what_if_needs_a_branch(lcm_sd, sd_pipe):
    traj = nbd.trace(lcm_sd, PROMPT, steps=3, guidance=5.0, seed=0)
    assert traj.capabilities == {"x0": True, "what_if": False, "branch": True, "live_guidance": True,
                                 "previews": True, "control": False}
    assert "branch" in traj.params["capabilities_reason"]
    assert pipeline_capabilities(lcm_sd)["what_if"] is False and pipeline_capabilities(sd_pipe)["what_if"] is True
    with pytest.raises(ValueError, match="nbd.branch"):
        traj.guided_x0(1, 3.0)
    branched = nbd.branch(lcm_sd, traj, at=0, guidance=2.0)
    whole = nbd.trace(lcm_sd, PROMPT, steps=3, guidance=[5.0, 2.0, 2.0], seed=0)
    assert torch.equal(branched.final_latents, whole.final_latents)



def test_a_saved_run_keeps_saying_so(lcm_sd, tmp_path):
    traj = nbd.trace(lcm_sd, PROMPT, steps=2, guidance=5.0, seed=0)
    traj.save(tmp_path / "run.nbd")
    assert nbd.Trajectory.load(tmp_path / "run.nbd").capabilities["what_if"] is False


def test_live_guidance_reaches_a_guidance_embedding_unet(lcm_sd):
    control = nbd.RunControl()
    seen = []

    def on_step(traj, step):
        seen.append(step.guidance)
        control.set_guidance(3.0)

    traj = nbd.trace(lcm_sd, PROMPT, steps=3, guidance=6.0, seed=4, control=control, on_step=on_step)
    assert seen == [6.0, 3.0, 3.0]
    assert torch.equal(traj.final_latents, nbd.trace(lcm_sd, PROMPT, steps=3, guidance=[6.0, 3.0, 3.0],
                                                     seed=4).final_latents)


def test_the_generic_path_hands_a_stochastic_sampler_the_generator():
    pipe = tiny_lcm_pipeline()
    a = nbd.trace(pipe, PROMPT, negative_prompt="", steps=3, guidance=6.0, seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    b = nbd.trace(pipe, PROMPT, negative_prompt="", steps=3, guidance=6.0, seed=7)
    assert type(pipe.scheduler).__name__ == "LCMScheduler" and a.params["scheduler"] == "LCMScheduler"
    assert torch.equal(a[-1].latents, b[-1].latents)
    assert torch.equal(a[-1].latents, own(pipe, 3, 6.0, 7))


def test_another_sampler_is_refused_where_the_pipeline_sets_timesteps_it_cannot_take():
    pipe = tiny_lcm_pipeline()
    with pytest.raises(ValueError, match="sets its timesteps with original_inference_steps, which "
                                         "EulerDiscreteScheduler does not take"):
        nbd.core.prepare(pipe, PROMPT, negative_prompt="", steps=3, scheduler="euler")


def test_an_lcm_scheduler_in_the_sd_family_loop(lcm_sd):
    """LCM-LoRA style: an LCMScheduler (set_timesteps with original_inference_steps) in StableDiffusionPipeline."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**{**{k: v for k, v in lcm_sd.components.items() if k != "image_encoder"},
                                      "scheduler": LCMScheduler.from_config(lcm_sd.scheduler.config)},
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=6.0, seed=8)
    assert traj.params["scheduler"] == "LCMScheduler"
    assert torch.equal(traj.final_latents, own(pipe, 4, 6.0, 8))
    assert torch.equal(nbd.branch(pipe, traj, at=1).final_latents, traj.final_latents)
