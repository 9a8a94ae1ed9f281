"""Issue 21, inputs: the image-to-image pipeline classes run through the family loop they share components with,
bit for bit what their own pipe(...) returns."""
import pytest
import torch
from diffusers import FluxImg2ImgPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline
from PIL import Image, ImageDraw

import nbdiffuse as nbd
from nbdiffuse.core.img2img import start_step
from nbdiffuse.core.quiet_logs import without_message
from nbdiffuse.testing import tiny_sd_pipeline, tiny_sdxl_pipeline

PROMPT = "big red circle on the left"


def picture(size):
    image = Image.new("RGB", (size, size), (250, 250, 240))
    ImageDraw.Draw(image).ellipse((2, 4, size // 2, size - 3), fill=(220, 30, 30))
    return image


def as_class(pipe, cls, **extra):
    parts = {k: v for k, v in pipe.components.items() if k in cls.__init__.__code__.co_varnames}
    out = cls(**parts, **extra)
    out.set_progress_bar_config(disable=True)
    return out


def own(pipe, image, steps, strength, guidance, seed, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, image=image, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                generator=generator, output_type="latent", **kw).images[0]


@pytest.mark.parametrize("steps,strength", [(6, 0.5), (5, 0.3)])
def test_sd_img2img_pipeline(sd_pipe, steps, strength):
    pipe = as_class(sd_pipe, StableDiffusionImg2ImgPipeline, requires_safety_checker=False)
    image = picture(16)
    traj = nbd.trace(pipe, PROMPT, steps=steps, guidance=5.0, seed=3, image=image, strength=strength)
    assert traj.params["pipeline"] == "StableDiffusionImg2ImgPipeline" and traj.params["family"] == "stable-diffusion"
    assert torch.equal(traj.final_latents, own(pipe, image, steps, strength, 5.0, 3))


def test_sdxl_img2img_pipeline(sdxl_pipe):
    pipe = as_class(sdxl_pipe, StableDiffusionXLImg2ImgPipeline)
    image = picture(16)
    traj = nbd.trace(pipe, PROMPT, steps=6, guidance=5.0, seed=2, image=image, strength=0.7)
    assert torch.equal(traj.final_latents, own(pipe, image, 6, 0.7, 5.0, 2))
    # without a strength the pipeline's own default (0.3 for SDXL's) applies, as in pipe(...)
    traj = nbd.trace(pipe, PROMPT, steps=10, guidance=5.0, seed=2, image=image)
    assert traj.params["strength"] == 0.3 and len(traj) == 3


@pytest.mark.parametrize("steps,strength", [(4, 0.5), (5, 0.3)])
def test_flux_img2img_pipeline(flux_pipe, steps, strength):
    pipe = as_class(flux_pipe, FluxImg2ImgPipeline)
    pipe.default_sample_size = flux_pipe.default_sample_size
    image = picture(32)
    traj = nbd.trace(pipe, PROMPT, steps=steps, guidance=3.5, seed=1, image=image, strength=strength,
                     height=32, width=32)
    assert len(traj) == steps - start_step(steps, strength, "flux")
    packed = own(pipe, image, steps, strength, 3.5, 1, height=32, width=32)
    assert torch.equal(traj.final_latents, pipe._unpack_latents(packed[None], 32, 32, pipe.vae_scale_factor)[0])
    # its default size is the pipeline's usual one (its __call__ takes a height), not the picture's
    assert nbd.core.prepare(pipe, PROMPT, steps=4, image=picture(48)).height == 32


def test_sd3_img2img_pipeline(sd3_pipe):
    from diffusers import StableDiffusion3Img2ImgPipeline

    pipe = as_class(sd3_pipe, StableDiffusion3Img2ImgPipeline)
    image = picture(16)
    traj = nbd.trace(pipe, PROMPT, steps=5, guidance=5.0, seed=4, image=image, strength=0.3, height=16, width=16)
    assert len(traj) == 2  # int(5 - 1.5) = 3 steps skipped, as its get_timesteps counts
    assert torch.equal(traj.final_latents, own(pipe, image, 5, 0.3, 5.0, 4, height=16, width=16))


def test_flux_counts_the_steps_its_own_way():
    assert start_step(5, 0.3) == 4 and start_step(5, 0.3, "flux") == 3
    assert start_step(4, 0.6) == 2 and start_step(4, 0.6, "flux") == 1  # int(4 - 2.4) = 1


def test_an_img2img_class_needs_an_image(sd_pipe):
    pipe = as_class(sd_pipe, StableDiffusionImg2ImgPipeline, requires_safety_checker=False)
    with pytest.raises(ValueError, match="image: StableDiffusionImg2ImgPipeline is an image-to-image pipeline"):
        nbd.core.prepare(pipe, PROMPT, steps=4)


def test_sdxl_img2img_with_aesthetic_scores(sdxl_pipe):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(4)  # a refiner-like UNet: 5 size ids (the aesthetic score replaces the target size)
    unet = UNet2DConditionModel.from_config({**sdxl_pipe.unet.config, "projection_class_embeddings_input_dim": 72})
    parts = {k: v for k, v in sdxl_pipe.components.items()
             if k in StableDiffusionXLImg2ImgPipeline.__init__.__code__.co_varnames}
    pipe = StableDiffusionXLImg2ImgPipeline(**{**parts, "unet": unet.eval()}, requires_aesthetics_score=True)
    pipe.set_progress_bar_config(disable=True)
    image = picture(16)
    traj = nbd.trace(pipe, PROMPT, steps=5, guidance=5.0, seed=6, image=image, strength=0.8)
    assert torch.equal(traj.final_latents, own(pipe, image, 5, 0.8, 5.0, 6))


def test_an_img2img_pipeline_on_the_generic_path(generic_pipe, tmp_path):
    from diffusers import AltDiffusionImg2ImgPipeline

    pipe = as_class(generic_pipe, AltDiffusionImg2ImgPipeline, requires_safety_checker=False)
    image = picture(16)
    traj = nbd.trace(pipe, PROMPT, steps=6, guidance=5.0, seed=3, image=image, strength=0.5)
    assert traj.params["family"] == "generic" and not traj.stopped
    assert len(traj) == traj.total_steps == 3 and traj.params["start_step"] == 3
    assert traj.params["strength"] == 0.5 and traj.params["image"]["width"] == 16
    assert torch.equal(traj[-1].latents, own(pipe, image, 6, 0.5, 5.0, 3))
    with pytest.raises(ValueError, match="image: AltDiffusionImg2ImgPipeline is an image-to-image pipeline"):
        nbd.core.prepare(pipe, PROMPT, steps=4)
    traj.save(tmp_path / "run.nbd")
    assert nbd.Trajectory.load(tmp_path / "run.nbd").total_steps == 3


@pytest.mark.parametrize("cls", [StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline])
def test_half_precision_encodes_the_picture_as_the_pipeline_does(cls):
    """fp16, a GPU's default: SD's pipelines encode the picture in fp16 although the VAE's config says force_upcast
    (only SDXL's upcast), and SDXL's cast the pixels to fp16 before upcasting and scale the sample in fp16. Each
    was a last-digit difference from pipe(...) before (0.0009 and 0.0007 at most)."""
    sd = cls is StableDiffusionImg2ImgPipeline
    base = tiny_sd_pipeline() if sd else tiny_sdxl_pipeline()  # its own parts: the fixtures' stay fp32
    pipe = as_class(base, cls, **({"requires_safety_checker": False} if sd else {}))
    with without_message("should be kept in float32: []", "diffusers.models.modeling_utils"):
        pipe.to(torch.float16)
    assert pipe.vae.config.force_upcast
    image = picture(16)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=5.0, seed=0, image=image, strength=0.6)
    assert traj.final_latents.dtype == torch.float16
    assert torch.equal(traj.final_latents, own(pipe, image, 3, 0.6, 5.0, 0))
