"""Issue 21 D, E5 and pipe_kwargs: the generic path records what pipe(...) returns where it differs from the last
step's latents, the size that ran, and passes a pipeline's own keywords through."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.testing import tiny_sana_sprint_pipeline

PROMPT = "big red circle on the left"


@pytest.fixture(scope="module")
def sprint():
    return tiny_sana_sprint_pipeline()


def own(pipe, steps, seed, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=4.5, generator=generator, output_type="latent",
                **kw).images[0]


def test_the_last_step_is_what_the_pipeline_returns(sprint):
    traj = nbd.trace(sprint, PROMPT, negative_prompt="", steps=2, guidance=4.5, seed=3, height=32, width=32)
    expected = own(sprint, 2, 3, height=32, width=32, use_resolution_binning=False)
    assert torch.equal(traj.final_latents, expected)
    assert any("the last step records what pipe(...) returned" in n for n in traj.notices)
    again = nbd.trace(sprint, PROMPT, negative_prompt="", steps=2, guidance=4.5, seed=3, height=32, width=32)
    assert torch.equal(again.final_latents, traj.final_latents)  # SCM's noise comes from the run's generator
    # x0 from its SCM sampler ("trigflow": cos(s) x_t - sin(s) F at its angle s), in the scale pipe(...) returns:
    # the last step's is exactly what it returned (before this, a Sana Sprint run had x_t alone)
    assert traj.has_x0 and torch.equal(traj[-1].pred_x0, expected)
    # its loop keeps x_t at sigma_data (0.5) times cos(s) x0 + sin(s) noise: the x_t view shows that form, as the
    # last step's (what pipe(...) returned, already divided) is shown
    assert traj[0].xt_scale == 2.0 and torch.equal(traj.latents_for(0, "xt"), traj[0].latents * 2.0)
    assert traj[-1].xt_scale == 1.0
    picture = nbd.trace(sprint, PROMPT, negative_prompt="", steps=2, guidance=4.5, seed=3, height=32, width=32,
                        pipe_kwargs={"max_timesteps": 1.0, "intermediate_timesteps": None})
    assert picture.has_x0 and torch.equal(picture[-1].pred_x0, picture.final_latents)


def test_the_size_that_ran_is_recorded(sprint):
    traj = nbd.trace(sprint, PROMPT, negative_prompt="", steps=1, guidance=4.5, seed=0, height=32, width=32,
                     pipe_kwargs={"use_resolution_binning": True, "intermediate_timesteps": None})
    assert (traj.params["height"], traj.params["width"]) == (1024, 1024)  # binned to its nearest trained size
    assert tuple(traj.final_latents.shape[-2:]) == (512, 512)
    assert traj.params["pipe_kwargs"] == {"use_resolution_binning": True, "intermediate_timesteps": None}
    assert any("ran at 1024x1024 where 32x32 was asked" in n for n in traj.notices)


def test_pipe_kwargs_are_checked_before_any_model_work(sprint, sd_pipe, pixart_pipe):
    with pytest.raises(ValueError, match="pipe_kwargs\\['num_inference_steps'\\]: nbdiffuse sets .* trace's steps="):
        nbd.core.prepare(sprint, PROMPT, negative_prompt="", pipe_kwargs={"num_inference_steps": 3})
    with pytest.raises(ValueError, match="pipe_kwargs\\['cfg'\\]: SanaSprintPipeline.__call__ takes no cfg"):
        nbd.core.prepare(sprint, PROMPT, negative_prompt="", pipe_kwargs={"cfg": 3})
    with pytest.raises(TypeError, match="pipe_kwargs must be None or a dict"):
        nbd.core.prepare(sd_pipe, PROMPT, pipe_kwargs=[("eta", 1.0)])
    with pytest.raises(ValueError, match="pipe_kwargs\\['cross_attention_kwargs'\\].*does not honour it"):
        nbd.core.prepare(sd_pipe, PROMPT, pipe_kwargs={"cross_attention_kwargs": {"scale": 0.5}})
    with pytest.raises(ValueError, match="pipe_kwargs\\['use_resolution_binning'\\]=True.*does not honour"):
        nbd.core.prepare(pixart_pipe, PROMPT, pipe_kwargs={"use_resolution_binning": True})
    nbd.core.prepare(pixart_pipe, PROMPT, pipe_kwargs={"use_resolution_binning": False})  # what it runs anyway


def test_hunyuan_dit_runs_the_size_as_given():
    from nbdiffuse.testing import tiny_hunyuan_dit_pipeline

    pipe = tiny_hunyuan_dit_pipeline()
    traj = nbd.trace(pipe, PROMPT, steps=2, guidance=4.5, seed=0, height=64, width=96)
    out = own(pipe, 2, 0, height=64, width=96, use_resolution_binning=False)
    assert torch.equal(traj.final_latents, out) and (traj.params["height"], traj.params["width"]) == (64, 96)
    assert traj.params["scheduler"] == "DDPMScheduler" and not traj.notices
    snapped = nbd.trace(pipe, PROMPT, steps=1, guidance=5.0, seed=0, height=64, width=88)  # its __call__ floors to 16
    assert (snapped.params["height"], snapped.params["width"]) == (64, 80)
    assert any("ran at 80x64 where 88x64 was asked" in n for n in snapped.notices)


@pytest.mark.parametrize("pag", [False, True])
@pytest.mark.parametrize("flow_dpm", [False, True])
def test_sana_pipelines(sprint, pag, flow_dpm):
    from diffusers import (DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, SanaPAGPipeline, SanaPipeline,
                           SanaTransformer2DModel)

    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2,
                                         attention_head_dim=4, num_cross_attention_heads=2, cross_attention_head_dim=4,
                                         cross_attention_dim=8, caption_channels=8, sample_size=32).eval()
    scheduler = DPMSolverMultistepScheduler(flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction") \
        if flow_dpm else FlowMatchEulerDiscreteScheduler(shift=3.0)
    parts = dict(tokenizer=sprint.tokenizer, text_encoder=sprint.text_encoder, vae=sprint.vae, transformer=transformer,
                 scheduler=scheduler)
    pipe = SanaPAGPipeline(**parts, pag_applied_layers=["transformer_blocks.0"]) if pag else SanaPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=4.5, seed=0, height=32, width=32)
    assert torch.equal(traj[-1].latents, own(pipe, 3, 0, height=32, width=32, use_resolution_binning=False))
    assert (traj.params["height"], traj.params["width"]) == (32, 32) and not traj.notices
    # a flow model is offered flow samplers only; its own DPM-Solver (set up for flow) by its class name
    own_name = "DPMSolverMultistepScheduler" if flow_dpm else "euler"
    assert nbd.schedulers(pipe) == ([own_name] if flow_dpm else []) + ["euler", "heun"]
    assert traj.params["scheduler"] == own_name


def test_cogview3plus_runs_its_own_scheduler():
    from nbdiffuse.testing import tiny_cogview3plus_pipeline

    pipe = tiny_cogview3plus_pipeline()
    assert nbd.schedulers(pipe)[0] == "CogVideoXDDIMScheduler"  # no short name fits: never swapped for euler
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=4.5, seed=0, height=16, width=16)
    assert traj.params["scheduler"] == "CogVideoXDDIMScheduler"
    assert torch.equal(traj[-1].latents, own(pipe, 3, 0, height=16, width=16))
