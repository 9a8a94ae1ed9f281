"""Image to image: trace(image=..., strength=...) against diffusers' own img2img pipelines."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import nbdiffuse as nbd
from nbdiffuse.core.schedulers import make_scheduler

PROMPT = "big red circle on the left"


def picture(size=64, color=(220, 30, 30)):
    image = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((8, 16, 36, 44), fill=color)
    return image


def img2img_latents(pipe, image, steps, strength, guidance, seed, scheduler=None):
    from diffusers import StableDiffusionImg2ImgPipeline

    components = dict(pipe.components)
    if scheduler is not None:
        components["scheduler"] = make_scheduler(pipe, scheduler)
    other = StableDiffusionImg2ImgPipeline(**components)
    other.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    return other(PROMPT, image=image, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                 generator=generator, output_type="latent").images[0]


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m", "heun", "ddim"])
def test_img2img_matches_diffusers_bit_for_bit(sd_pipe, scheduler):
    image = picture()
    traj = nbd.trace(sd_pipe, PROMPT, steps=10, guidance=5.0, seed=2, image=image, strength=0.6, scheduler=scheduler)
    assert len(traj) == traj.total_steps == 6  # the last int(10 * 0.6) steps of a 10-step schedule
    assert traj.params["start_step"] == 4 and traj.params["strength"] == 0.6
    assert traj.params["image"]["width"] == 64 and len(traj.params["image"]["sha256"]) == 16
    expected = img2img_latents(sd_pipe, image, 10, 0.6, 5.0, 2, scheduler=scheduler)
    assert torch.equal(traj.final_latents, expected)


def test_low_strength_keeps_the_picture_and_full_strength_does_not(sd_pipe):
    image = picture()
    clean = nbd.core.img2img.image_latents(nbd.core.families.family_for(sd_pipe), image, 64, 64,
                                           torch.Generator("cpu").manual_seed(0))[0]
    near = nbd.trace(sd_pipe, PROMPT, steps=10, image=image, strength=0.2, seed=0)
    far = nbd.trace(sd_pipe, PROMPT, steps=10, image=image, strength=1.0, seed=0)
    assert len(near) == 2 and len(far) == 10
    # Strength 0.2 starts close to the picture's latents; strength 1 from (almost) pure noise.
    assert (near.initial_latents[0] - clean).abs().mean() < (far.initial_latents[0] - clean).abs().mean()


def test_img2img_for_flow_matching_models(sd3_pipe):
    traj = nbd.trace(sd3_pipe, PROMPT, steps=6, image=picture(32), strength=0.5, seed=0)
    assert len(traj) == 3 and traj.final_latents.shape == traj.initial_latents.shape[1:]
    assert traj.image(-1).size == (32, 32)


def test_image_size_and_forms(sd_pipe, tmp_path):
    wide = Image.new("RGB", (70, 45), (0, 0, 200))  # rounded down to the VAE's multiple
    traj = nbd.trace(sd_pipe, PROMPT, steps=4, image=wide, strength=0.5)
    f = nbd.core.families.family_for(sd_pipe).vae_factor
    assert (traj.params["width"], traj.params["height"]) == (70 // f * f, 45 // f * f) != (70, 45)
    resized = nbd.trace(sd_pipe, PROMPT, steps=4, image=wide, strength=0.5, height=32, width=32)
    assert resized.image(-1).size == (32, 32)
    path = tmp_path / "start.png"
    picture().save(path)
    from_file = nbd.trace(sd_pipe, PROMPT, steps=4, image=str(path), strength=0.5, seed=1)
    from_array = nbd.trace(sd_pipe, PROMPT, steps=4, image=np.asarray(picture()), strength=0.5, seed=1)
    assert torch.equal(from_file.final_latents, from_array.final_latents)


@pytest.mark.parametrize("kwargs, message", [
    ({"image": picture(), "strength": 0.0}, "strength must be a number in \\(0, 1\\]"),
    ({"image": picture(), "strength": 1.5}, "strength must be a number in \\(0, 1\\]"),
    ({"image": picture(), "strength": float("nan")}, "strength must be"),
    ({"image": picture(), "strength": 0.05}, "runs no step"),
    ({"strength": 0.5}, "strength=0.5 needs an image"),
    ({"image": "no/such/file.png"}, "image: could not read"),
    ({"image": np.zeros((8, 8, 3), np.float32)}, "uint8"),
    ({"image": 3}, "image must be a PIL.Image"),
])
def test_bad_img2img_input_is_refused_clearly(sd_pipe, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        nbd.trace(sd_pipe, PROMPT, steps=10, **kwargs)


def test_img2img_trajectory_saves_and_loads(sd_pipe, tmp_path):
    traj = nbd.trace(sd_pipe, PROMPT, steps=6, image=picture(), strength=0.5, seed=0)
    traj.save(tmp_path / "run.nbd")
    back = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert back.total_steps == 3 and back.params["start_step"] == 3
    assert torch.equal(back.final_latents, traj.final_latents)
