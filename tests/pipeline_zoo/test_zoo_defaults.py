"""What the Explorer starts from for pipelines that say it their own way: a default size written in
__call__ (#21 E4), a scheduler outside nbdiffuse's names (#21 E3); and a size the pipeline changes (#21 E5)."""
from __future__ import annotations

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.families import adapter_for

import builders
from test_zoo_runs import built
from cases import CASES

def case_of(name):
    return next(case for case in CASES if case.cls == name)


def test_the_explorer_knows_a_default_size_written_in_call(open_explorer):
    """ZImagePipeline starts __call__ with `height = height or 1024`: no config says it."""
    pipe, _ = built(case_of("ZImagePipeline"))
    assert adapter_for(pipe).default_size() == (1024, 1024)
    ex, fe = open_explorer(pipe, ignore_threads=("tqdm_monitor",))
    assert (ex.height, ex.width) == (1024, 1024) and fe.state["image_size"] == [1024, 1024]
    assert 1024 in fe.state["size_options"]


def test_a_default_size_in_the_signature():
    pipe, _ = built(case_of("Kandinsky3Pipeline"))
    assert adapter_for(pipe).default_size() == (1024, 1024)  # `height: int | None = 1024`


def test_a_pipeline_with_its_size_in_config_is_read_as_before():
    pipe = builders.sd()  # height = height or self.default_sample_size * self.vae_scale_factor
    assert adapter_for(pipe).default_size() == (pipe.unet.config.sample_size * pipe.vae_scale_factor,) * 2


def test_kandinsky3_records_the_size_it_ran():
    pipe, _ = built(case_of("Kandinsky3Pipeline"))
    traj = nbd.trace(pipe, "a red circle", steps=1, height=32, width=32)
    assert traj.image(-1, "xt", decoder="full", size="latent").size == (traj.params["width"], traj.params["height"])


def test_the_explorer_offers_and_runs_a_scheduler_outside_its_name_table(open_explorer):
    """LatentConsistencyModelPipeline's LCMScheduler (#21 E3): the first choice, shown by its class name, and
    a run on it works (the Explorer used to swap in euler, and LCM failed on original_inference_steps)."""
    pipe, _ = built(case_of("LatentConsistencyModelPipeline"))
    ex, fe = open_explorer(pipe, ignore_threads=("tqdm_monitor",), steps=2, height=16, width=16)
    assert fe.state["scheduler"] == "LCMScheduler" == fe.state["scheduler_options"][0]
    assert "euler" in fe.state["scheduler_options"]  # nbdiffuse's own samplers stay on offer
    fe.click("generate")
    assert ex.wait(120)
    assert fe.state["error"] == "" and fe.state["status"] == "done"
    assert ex.trajectory.params["scheduler_class"] == "LCMScheduler"
    with pytest.raises(ValueError, match="scheduler must be one of 'LCMScheduler', 'euler'"):
        ex.scheduler = "NoSuchScheduler"


def test_an_image_to_image_class_without_a_known_size_runs_at_the_pictures_size():
    """ZImageImg2ImgPipeline leaves height None and takes the picture's: trace does the same, bit for bit."""
    from test_zoo_runs import PROMPT, SEED, STEPS, STRENGTH, reference_run, start_picture

    case = case_of("ZImageImg2ImgPipeline")
    pipe, _ = built(case)
    assert adapter_for(pipe).default_size() is None
    traj = nbd.trace(pipe, PROMPT, steps=STEPS, guidance=case.guidance, seed=SEED, image=start_picture(case),
                     strength=STRENGTH)
    assert (traj.params["height"], traj.params["width"]) == case.size
    latents, ran = reference_run(case, pipe, height=None, width=None)
    assert len(traj) == ran and torch.equal(traj.final_latents, latents)


def test_the_explorer_opens_on_an_image_to_image_class_and_asks_for_a_picture(open_explorer):
    """The Explorer checks its controls against a blank picture; Generate without one says what is missing.
    SDXL img2img's own strength 0.3 runs no step of 2: the check runs at strength 1, Generate with the control."""
    case = case_of("StableDiffusionXLImg2ImgPipeline")
    pipe, _ = built(case)
    ex, fe = open_explorer(pipe, ignore_threads=("tqdm_monitor",), steps=2, height=16, width=16)
    fe.click("generate")
    assert ex.wait(120)
    assert "is an image-to-image pipeline; pass image=" in fe.state["error"]


def test_prx_default_sizes():
    """PRXPipeline: `height = height or default_resolution` from its get_default_resolution(), in pixels (its
    default_sample_size is no latent size); PRXPixelPipeline: its config's default_sample_size at a VAE factor of 1,
    read without diffusers' deprecated attribute lookup of config entries."""
    import warnings

    from test_zoo_runs import PROMPT

    pipe, _ = built(case_of("PRXPipeline"))
    assert adapter_for(pipe).default_size() == (512, 512)
    out = pipe(PROMPT, num_inference_steps=1, guidance_scale=1.0, output_type="latent", use_resolution_binning=False)
    assert tuple(out.images.shape[-2:]) == (512 // pipe.vae_scale_factor,) * 2  # what pipe(...) makes given no size
    pixel, _ = built(case_of("PRXPixelPipeline"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert adapter_for(pixel).default_size() == (1024, 1024) == (pixel.config.default_sample_size,) * 2
