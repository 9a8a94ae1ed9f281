"""Issue 21 A: each run's scheduler copy keeps every setting the pipeline's own runs with, including the
keys its config lists in `_use_default_values` that the pipeline's __init__ rewrote (steps_offset)."""
import warnings

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

import nbdiffuse as nbd
from nbdiffuse.core.schedulers import effective_config, make_scheduler, own_scheduler_name, scheduler_choices

PROMPT = "big red circle on the left"
# A checkpoint's scheduler_config.json without steps_offset (SD 1.x and 2.x as first released).
NO_OFFSET = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "timestep_spacing": "leading", "clip_sample": False, "set_alpha_to_one": False}


def rebuilt(pipe, cls, scheduler_cls=DDIMScheduler, prediction_type="epsilon"):
    """`pipe`'s parts in `cls`, with a scheduler built from a config that lacks steps_offset."""
    scheduler = scheduler_cls.from_config({**NO_OFFSET, "prediction_type": prediction_type})
    assert "steps_offset" in scheduler.config["_use_default_values"]
    parts = {k: v for k, v in pipe.components.items() if k != "image_encoder"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' deprecation note about the rewrite
        out = cls(**{**parts, "scheduler": scheduler}, requires_safety_checker=False)
    out.set_progress_bar_config(disable=True)
    return out


def test_the_copy_keeps_a_default_the_pipeline_rewrote(sd_pipe):
    pipe = rebuilt(sd_pipe, StableDiffusionPipeline)
    assert pipe.scheduler.config.steps_offset == 1  # rewritten by StableDiffusionPipeline.__init__
    assert "steps_offset" in pipe.scheduler.config["_use_default_values"]
    copy = make_scheduler(pipe)
    assert copy.config.steps_offset == 1 and copy is not pipe.scheduler
    copy.set_timesteps(4)
    pipe.scheduler.set_timesteps(4)
    assert copy.timesteps.tolist() == pipe.scheduler.timesteps.tolist() == [751, 501, 251, 1]
    # another sampler keeps the rewrite too, and takes its own defaults for what was never set
    euler = make_scheduler(pipe, "euler")
    assert euler.config.steps_offset == 1 and euler.config.timestep_spacing == "leading"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_trace_matches_pipe_on_a_config_without_steps_offset(sd_pipe, prediction_type):
    pipe = rebuilt(sd_pipe, StableDiffusionPipeline, prediction_type=prediction_type)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=6.0, seed=5)
    generator = torch.Generator("cpu").manual_seed(5)
    out = pipe(PROMPT, num_inference_steps=4, guidance_scale=6.0, generator=generator, output_type="latent")
    assert [s.timestep for s in traj] == [751.0, 501.0, 251.0, 1.0]
    assert torch.equal(traj.final_latents, out.images[0])


def test_img2img_pipeline_matches_on_a_config_without_steps_offset(sd_pipe):
    from PIL import Image

    pipe = rebuilt(sd_pipe, StableDiffusionImg2ImgPipeline, scheduler_cls=EulerDiscreteScheduler)
    image = Image.new("RGB", (16, 16), (200, 40, 40))
    traj = nbd.trace(pipe, PROMPT, steps=5, guidance=4.0, seed=1, image=image, strength=0.6)
    generator = torch.Generator("cpu").manual_seed(1)
    out = pipe(PROMPT, image=image, strength=0.6, num_inference_steps=5, guidance_scale=4.0, generator=generator,
               output_type="latent")
    assert torch.equal(traj.final_latents, out.images[0])


def test_the_pipelines_own_scheduler_goes_by_its_class_name_when_no_short_name_fits(sd_pipe):
    from diffusers import LCMScheduler

    pipe = rebuilt(sd_pipe, StableDiffusionPipeline, scheduler_cls=LCMScheduler)
    assert own_scheduler_name(pipe) == "LCMScheduler"
    assert scheduler_choices(pipe)[0] == "LCMScheduler" and "euler" in scheduler_choices(pipe)
    assert type(make_scheduler(pipe, "LCMScheduler")) is LCMScheduler
    assert nbd.schedulers(pipe) == scheduler_choices(pipe)  # what trace accepts, the Explorer offers
    assert own_scheduler_name(sd_pipe) == "euler" and scheduler_choices(sd_pipe) == nbd.schedulers()
    with pytest.raises(ValueError, match="'LCMScheduler' \\(the pipeline's own\\)"):
        make_scheduler(pipe, "DDIMScheduler")
    assert effective_config(pipe.scheduler)["steps_offset"] == 1


def test_the_explorer_starts_on_the_pipelines_own_scheduler():
    from nbdiffuse.testing import tiny_lcm_pipeline
    from nbdiffuse.widgets.control_defaults import model_defaults

    pipe = tiny_lcm_pipeline()
    values = model_defaults(pipe, {})
    assert values["scheduler"] == "LCMScheduler" and values["scheduler_options"][0] == "LCMScheduler"
    traj = nbd.trace(pipe, PROMPT, negative_prompt="", steps=2, guidance=6.0, seed=0, scheduler=values["scheduler"])
    assert traj.params["scheduler_class"] == "LCMScheduler" and len(traj) == 2


@pytest.mark.parametrize("scheduler", [None, "euler_a"])
def test_a_pag_pipeline_and_one_on_the_generic_path_match_pipe(sd_pipe, generic_pipe, scheduler):
    """The copy keeps steps_offset, and euler_a draws from the run's generator: in nbdiffuse's loop (PAG,
    core/pag.py) and on the generic path (AltDiffusionPipeline)."""
    from diffusers import AltDiffusionPipeline, EulerAncestralDiscreteScheduler, StableDiffusionPAGPipeline

    scheduler_cls = EulerAncestralDiscreteScheduler if scheduler else DDIMScheduler
    pag = rebuilt(sd_pipe, StableDiffusionPAGPipeline, scheduler_cls=scheduler_cls)
    pag.set_pag_applied_layers("mid")
    for pipe, family in ((pag, "stable-diffusion"), (rebuilt(generic_pipe, AltDiffusionPipeline, scheduler_cls), "generic")):
        traj = nbd.trace(pipe, PROMPT, steps=4, guidance=6.0, seed=2, scheduler=scheduler)
        torch.manual_seed(99)  # the global RNG must not matter
        generator = torch.Generator("cpu").manual_seed(2)
        out = pipe(PROMPT, num_inference_steps=4, guidance_scale=6.0, generator=generator, output_type="latent")
        assert torch.equal(traj[-1].latents, out.images[0]) and traj.params["family"] == family


def test_pixart_with_a_plain_ddim_scheduler_runs_it(pixart_pipe):
    """PixArt checkpoints ship DDIMScheduler() (clip_sample on): no short name fits, so it runs as it is."""
    from diffusers import PixArtSigmaPipeline

    pipe = PixArtSigmaPipeline(**{**pixart_pipe.components, "scheduler": DDIMScheduler()})
    pipe.set_progress_bar_config(disable=True)
    assert nbd.schedulers(pipe)[0] == own_scheduler_name(pipe) == "DDIMScheduler"
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=4.5, seed=1)
    generator = torch.Generator("cpu").manual_seed(1)
    out = pipe(PROMPT, num_inference_steps=3, guidance_scale=4.5, generator=generator, output_type="latent",
               use_resolution_binning=False, clean_caption=False, height=16, width=16)
    assert traj.params["scheduler"] == "DDIMScheduler" and torch.equal(traj.final_latents, out.images[0])
