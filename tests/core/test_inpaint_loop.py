"""Inpainting in the family's own loop (core/inpaint_loop.py): SD's, SDXL's, SD3's and Flux's inpainting pipelines
(SD's and SDXL's PAG and ControlNet ones too), blended (a UNet of 4 channels) or reading the mask (9), bit for bit their
pipe(...) on every sampler, and what the loop adds: the (cond, uncond) pair and what-if, guidance that changes per
step, branches (from a loaded run too), attention maps and decision curves, each going on with the run's mask."""
import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.nbd_schema import TrajectoryFileError
from nbdiffuse.core.schedulers import make_scheduler
from nbdiffuse.testing import tiny_sdxl_pipeline

from inpaint_helpers import PROMPT, SIZE, picture, square_mask


def inside(latents):
    """Where the mask repaints, at the latents' size (square_mask's square)."""
    f = SIZE // latents.shape[-1]
    where = torch.zeros(latents.shape[-2:], dtype=torch.bool)
    where[8 // f:24 // f, 8 // f:24 // f] = True
    return where


def with_unet(pipe, channels, seed=3):
    """`pipe`'s inpainting sibling with a UNet of `channels` input channels (9: made for inpainting)."""
    from diffusers import AutoPipelineForInpainting, UNet2DConditionModel

    inpainting = AutoPipelineForInpainting.from_pipe(pipe)
    if channels != pipe.unet.config.in_channels:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config({**pipe.unet.config, "in_channels": channels})
        inpainting = type(inpainting)(**{**inpainting.components, "unet": unet})
    inpainting.set_progress_bar_config(disable=True)
    return inpainting


@pytest.fixture(scope="module")
def blended(sd_pipe):
    return with_unet(sd_pipe, 4)


@pytest.fixture(scope="module")
def reads_mask(sd_pipe):
    return with_unet(sd_pipe, 9)


@pytest.fixture(params=["blended", "reads_mask"], ids=["blended", "9-channel"])
def pipe(request):
    return request.getfixturevalue(request.param)


def pipes_own(pipe, steps=4, strength=0.75, guidance=7.5, seed=1, scheduler=None, mask=None, image=None, **extra):
    """The latents pipe(...)'s callback saw at each step (on `scheduler`, made as trace makes it)."""
    seen = []

    def keep(p, i, t, kwargs):
        seen.append(kwargs["latents"][0].clone())
        return kwargs

    own = type(pipe)(**{**pipe.components, "scheduler": make_scheduler(pipe, scheduler)})
    own.set_progress_bar_config(disable=True)
    if hasattr(pipe, "default_sample_size"):  # a tiny Flux's, set on the pipeline (its config has none)
        own.default_sample_size = pipe.default_sample_size
    own(PROMPT, image=picture() if image is None else image, mask_image=square_mask() if mask is None else mask,
        strength=strength, num_inference_steps=steps, guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed), output_type="latent", callback_on_step_end=keep, **extra)
    return seen


def traced(pipe, steps=4, strength=0.75, guidance=7.5, seed=1, **extra):
    return nbd.trace(pipe, PROMPT, steps=steps, guidance=guidance, seed=seed, image=picture(), strength=strength,
                     mask_image=square_mask(), **extra)


@pytest.mark.parametrize("scheduler", ["euler", "euler_a", "dpmpp_2m", "ddim", "heun"])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_every_sampler_runs_the_pipelines_own_inpainting(pipe, scheduler, strength):
    traj = traced(pipe, steps=5, strength=strength, scheduler=scheduler, height=SIZE, width=SIZE)
    seen = pipes_own(pipe, steps=5, strength=strength, scheduler=scheduler, height=SIZE, width=SIZE)
    assert traj.params["family"] == "stable-diffusion" and traj.capabilities["branch"]
    if scheduler == "heun":  # its callback sees each of a step's two evaluations: every step is among them
        assert all(any(torch.equal(step.latents, own) for own in seen) for step in traj)
        assert torch.equal(traj.final_latents, seen[-1]) and len(seen) == 2 * len(traj) - 1
    else:
        assert len(traj) == len(seen) and all(torch.equal(step.latents, own) for step, own in zip(traj, seen))
    assert all(step.eps_uncond is not None for step in traj)  # the (cond, uncond) pair: what-if works


def test_the_pipelines_defaults_size_and_strength(blended):
    """Without height/width: the UNet's sample size, not the picture's (StableDiffusionInpaintPipeline's own
    default); without strength: the pipeline's own (1.0: every step runs)."""
    traj = nbd.trace(blended, PROMPT, steps=3, seed=1, image=picture(), mask_image=square_mask())
    side = blended.unet.config.sample_size * blended.vae_scale_factor
    assert (traj.params["height"], traj.params["width"]) == (side, side) and side != SIZE
    assert traj.params["strength"] == 1.0 and len(traj) == 3
    seen = pipes_own(blended, steps=3, strength=1.0)
    assert torch.equal(traj.final_latents, seen[-1])


def test_a_blended_run_keeps_its_picture_whatever_the_guidance(blended):
    """Guidance that crosses 1 within the run, and a what-if; outside the mask the run ends on the picture's own
    latents, whatever the model did inside it."""
    traj = traced(blended, steps=4, strength=1.0, guidance=[7.5, 1.0, 3.0, 1.0], height=SIZE, width=SIZE)
    assert [step.eps_uncond is None for step in traj] == [False, True, False, True]
    other = traced(blended, steps=4, strength=1.0, guidance=2.0, height=SIZE, width=SIZE)
    where = inside(traj.final_latents)
    assert torch.equal(traj.final_latents[:, ~where], other.final_latents[:, ~where])
    assert not torch.equal(traj.final_latents[:, where], other.final_latents[:, where])
    what_if = traj.guided_x0(0, 12.0)
    assert what_if.shape == traj[0].pred_x0.shape and not torch.equal(what_if, traj[0].pred_x0)


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m"])
def test_a_branch_replays_the_run_and_goes_on_with_its_mask(pipe, scheduler):
    traj = traced(pipe, steps=6, strength=0.8, scheduler=scheduler, height=SIZE, width=SIZE)
    same = nbd.branch(pipe, traj, 1)  # no change: the rest of the run again, bit for bit (ancestral noise too)
    assert torch.equal(same.final_latents, traj.final_latents) and same.params["mask"] == traj.params["mask"]
    assert np.array_equal(np.asarray(same.mask), np.asarray(traj.mask)) and same.start_picture is traj.start_picture
    other = nbd.branch(pipe, traj, 1, prompt="a blue square", guidance=3.0)
    assert not torch.equal(other.final_latents, traj.final_latents)
    if pipe.unet.config.in_channels == 4:  # blended: the kept part is the picture's, whatever the branch asks
        where = inside(traj.final_latents)
        assert torch.equal(other.final_latents[:, ~where], traj.final_latents[:, ~where])
    replanned = nbd.branch(pipe, traj, 1, scheduler="ddim", steps=8)  # a new schedule, the same mask
    assert replanned.params["scheduler"] == "ddim" and replanned.parent is traj
    assert torch.isfinite(replanned.final_latents).all()
    if pipe.unet.config.in_channels == 4:  # blended on the new schedule, ending on the picture's own latents
        assert torch.equal(replanned.final_latents[:, ~where], traj.final_latents[:, ~where])


def test_a_loaded_run_branches_as_the_run_itself(pipe, tmp_path):
    """The file keeps the start picture (format 6) beside the mask: a loaded run's branch makes the masks and latents
    again from them, with the run's seed, and goes on exactly as the run's own branch does."""
    traj = traced(pipe, steps=5, strength=0.8, scheduler="euler_a", height=SIZE, width=SIZE)
    traj.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert np.array_equal(np.asarray(loaded.start_picture), np.asarray(picture()))
    mine = nbd.branch(pipe, traj, 1, guidance=2.0)
    theirs = nbd.branch(pipe, loaded, 1, guidance=2.0)
    assert torch.equal(mine.final_latents, theirs.final_latents)
    assert torch.equal(nbd.branch(pipe, loaded, 2).final_latents, traj.final_latents)


def test_a_file_keeps_the_start_picture_it_fingerprints(blended, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    traced(blended, steps=2, height=SIZE, width=SIZE).save(tmp_path / "run.nbd")
    with safe_open(str(tmp_path / "run.nbd"), framework="pt") as handle:
        header = handle.metadata()
    assert header["format_version"] == "6"
    tensors = load_file(str(tmp_path / "run.nbd"))
    other = torch.from_numpy(np.asarray(picture(seed=5)).copy())
    save_file(dict(tensors, start_picture=other), str(tmp_path / "other.nbd"), metadata=header)
    with pytest.raises(TrajectoryFileError, match=r"tensor start_picture must be the picture params\.image "
                                                  r"fingerprints \(sha256 '[0-9a-f]{16}'\), got 'another picture'"):
        nbd.Trajectory.load(tmp_path / "other.nbd")
    save_file(dict(tensors, start_picture=other[:4]), str(tmp_path / "shape.nbd"), metadata=header)
    with pytest.raises(TrajectoryFileError, match=r"tensor start_picture must be a uint8 tensor of shape \(32, 32, 3\)"):
        nbd.Trajectory.load(tmp_path / "shape.nbd")
    meta = json.loads(header["meta"])
    del meta["params"]["image"]
    save_file(tensors, str(tmp_path / "none.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match="only a run from a picture"):
        nbd.Trajectory.load(tmp_path / "none.nbd")


def test_a_run_without_its_start_picture_is_not_branched_blindly(blended):
    traj = traced(blended, steps=4, height=SIZE, width=SIZE)
    traj.start_picture = None  # as a file written before start pictures were kept
    with pytest.raises(ValueError, match="this inpainting run's start picture or mask was not kept with it"):
        nbd.branch(blended, traj, 0)
    with pytest.raises(ValueError, match="this run's start picture was not kept with it"):
        nbd.decision_curve_of(blended, traj, samples=1, at=[0])


def test_attention_maps_of_an_inpainting_run(pipe):
    plain = traced(pipe, steps=3, height=SIZE, width=SIZE)
    watched = traced(pipe, steps=3, height=SIZE, width=SIZE, attention=True)
    assert torch.equal(watched.final_latents, plain.final_latents)  # the run itself is the same
    assert watched.attention(0, "red").shape == tuple(watched.initial_latents.shape[-2:])  # on the latent grid


def test_a_decision_curve_of_an_inpainting_run(blended, monkeypatch):
    """Its continuations inpaint too: each puts the same kept part back, so outside the mask they end as the run."""
    from nbdiffuse.core.run import Run

    traj = traced(blended, steps=4, strength=1.0, height=SIZE, width=SIZE)
    made, execute = [], Run.execute
    monkeypatch.setattr(Run, "execute", lambda run: made.append(execute(run)) or made[-1])
    curve = nbd.decision_curve_of(blended, traj, samples=2, at=[0, 2])
    assert curve.steps == [0, 2] and all(0.0 < v <= 1.0 for v in curve.keep["picture"])
    where = inside(traj.final_latents)
    assert len(made) == 4 and all(run.params["mask"] == traj.params["mask"] for run in made)
    assert all(torch.equal(run.final_latents[:, ~where], traj.final_latents[:, ~where]) for run in made)
    assert not any(torch.equal(run.final_latents, traj.final_latents) for run in made)  # fresh noise inside


def test_sdxl_inpainting_in_its_family_loop():
    base = tiny_sdxl_pipeline()
    for channels in (4, 9):
        pipe = with_unet(base, channels)
        traj = nbd.trace(pipe, PROMPT, steps=4, guidance=5.0, seed=1, image=picture(), mask_image=square_mask(),
                         height=SIZE, width=SIZE, scheduler="euler_a")
        assert traj.params["family"] == "stable-diffusion-xl" and traj.params["strength"] == 0.9999
        seen = pipes_own(pipe, steps=4, strength=0.9999, guidance=5.0, scheduler="euler_a", height=SIZE, width=SIZE)
        assert len(traj) == len(seen) and all(torch.equal(step.latents, own) for step, own in zip(traj, seen))
        assert torch.equal(nbd.branch(pipe, traj, 0).final_latents, traj.final_latents)


def test_decision_curves_of_an_image_to_image_pipeline(sd_pipe, tmp_path):
    """StableDiffusionImg2ImgPipeline needs its picture: continuations take the one the run kept (a file keeps it)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(**sd_pipe.components)
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=4, seed=1, image=picture(), strength=1.0)
    traj.save(tmp_path / "run.nbd")
    for run in (traj, nbd.Trajectory.load(tmp_path / "run.nbd")):
        curve = nbd.decision_curve_of(pipe, run, samples=1, at=[1])
        assert curve.steps == [1]


@pytest.mark.parametrize("channels", [4, 9])
@pytest.mark.parametrize("base", ["pag", "controlnet", "controlnet_xl", "controlnet_pag"])
def test_pag_and_controlnet_inpainting_in_the_family_loop(base, channels):
    """SD's PAG and SD's and SDXL's ControlNet inpainting pipelines, and SD's ControlNet PAG one: the ControlNet reads
    x_t alone (the mask goes to the UNet after it), the perturbed row takes the mask too; bit for bit pipe(...),
    and a branch that changes nothing replays the run. Without height/width a ControlNet one takes the picture's
    size (its pipe(...) does), the others the UNet's sample size."""
    from nbdiffuse.testing import tiny_controlnet_pipeline, tiny_pag_pipeline

    if base == "controlnet_pag":
        made = nbd.load_pipeline(tiny_controlnet_pipeline(), pag="mid")
    else:
        made = tiny_pag_pipeline() if base == "pag" else tiny_controlnet_pipeline(xl=base == "controlnet_xl")
    pipe = with_unet(made, channels)
    control = {"control_image": picture(seed=7)} if "controlnet" in base else {}
    guidance = 5.0
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=guidance, seed=1, image=picture(), strength=0.8,
                     mask_image=square_mask(), scheduler="euler_a", **control)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert traj.params["height"] == (SIZE if control else side) and traj.params["family"].startswith("stable")
    seen = pipes_own(pipe, steps=4, strength=0.8, guidance=guidance, scheduler="euler_a",
                     **({"control_image": control["control_image"]} if control else {}))
    assert len(traj) == len(seen) and all(torch.equal(step.latents, own) for step, own in zip(traj, seen))
    assert torch.equal(nbd.branch(pipe, traj, 0).final_latents, traj.final_latents)


def sd3_inpainting(channels):
    """A tiny StableDiffusion3InpaintPipeline: a VAE of 16 latent channels (SD3's latent space), and a transformer of
    16 input channels (blended) or 33 (it reads the mask and the masked picture's latents)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3InpaintPipeline
    from nbdiffuse.testing import tiny_sd3_pipeline

    parts = tiny_sd3_pipeline().components
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config({**parts["vae"].config, "latent_channels": 16})
    transformer = SD3Transformer2DModel.from_config({**parts["transformer"].config, "in_channels": channels,
                                                     "out_channels": 16})
    pipe = StableDiffusion3InpaintPipeline(**{**parts, "vae": vae, "transformer": transformer})
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("channels", [16, 33])
@pytest.mark.parametrize("scheduler,strength", [(None, 1.0), (None, 0.6), ("heun", 0.8)])
def test_sd3_inpainting_in_its_family_loop(channels, scheduler, strength):
    """Flow matching: the kept part noised with scale_noise; strength counted as SD3's pipelines count it."""
    pipe = sd3_inpainting(channels)
    traj = nbd.trace(pipe, PROMPT, steps=5, guidance=7.0, seed=1, image=picture(), strength=strength,
                     mask_image=square_mask(), height=SIZE, width=SIZE, scheduler=scheduler)
    assert traj.params["family"] == "stable-diffusion-3" and traj.initial_latents.shape[1] == 16
    seen = pipes_own(pipe, steps=5, strength=strength, guidance=7.0, scheduler=scheduler, height=SIZE, width=SIZE)
    assert torch.equal(traj.final_latents, seen[-1])
    if scheduler is None:
        assert len(traj) == len(seen) and all(torch.equal(step.latents, own) for step, own in zip(traj, seen))
    assert torch.equal(nbd.branch(pipe, traj, 0).final_latents, traj.final_latents)
    if channels == 16:  # blended: its last x_t is the picture's latents outside the mask, whatever the prompt
        other = nbd.branch(pipe, traj, 0, prompt="a blue square")
        where = inside(traj.final_latents)
        assert torch.equal(other.final_latents[:, ~where], traj.final_latents[:, ~where])


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_flux_inpainting_in_its_family_loop(strength):
    """FluxInpaintPipeline: packed latents, always blended (its transformer reads x_t alone); the guidance a model
    input, per step and live, and branches with the mask."""
    from nbdiffuse.testing import tiny_flux_pipeline

    from diffusers import AutoPipelineForInpainting

    pipe = AutoPipelineForInpainting.from_pipe(tiny_flux_pipeline())
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=3.5, seed=1, image=picture(), strength=strength,
                     mask_image=square_mask(), height=SIZE, width=SIZE)
    assert traj.params["family"] == "flux" and traj.capabilities["branch"]
    seen = pipes_own(pipe, steps=4, strength=strength, guidance=3.5, height=SIZE, width=SIZE)
    unpacked = [type(pipe)._unpack_latents(own[None], SIZE, SIZE, pipe.vae_scale_factor)[0] for own in seen]
    assert len(traj) == len(seen) and all(torch.equal(step.latents, own) for step, own in zip(traj, unpacked))
    assert torch.equal(nbd.branch(pipe, traj, 0).final_latents, traj.final_latents)
    other = nbd.branch(pipe, traj, 0, guidance=1.0)
    where = inside(traj.final_latents)
    assert torch.equal(other.final_latents[:, ~where], traj.final_latents[:, ~where])
    assert not torch.equal(other.final_latents[:, where], traj.final_latents[:, where])


def test_flux_controlnet_inpainting_at_its_own_default_size():
    """FluxControlNetInpaintPipeline: its control latents drawn first, as its pipe(...) draws them; without
    height/width its usual size (`height or default_sample_size * vae_scale_factor`), not the picture's."""
    from diffusers import AutoPipelineForInpainting
    from nbdiffuse.testing import tiny_flux_controlnet_pipeline

    base = tiny_flux_controlnet_pipeline()
    pipe = AutoPipelineForInpainting.from_pipe(base)
    pipe.default_sample_size = base.default_sample_size
    pipe.set_progress_bar_config(disable=True)
    control, start = picture(seed=7), picture().resize((48, 48))
    mask = square_mask().resize((48, 48), Image.NEAREST)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=3.5, seed=1, image=start, strength=0.8, mask_image=mask,
                     control_image=control)
    side = pipe.default_sample_size * pipe.vae_scale_factor
    assert type(pipe).__name__ == "FluxControlNetInpaintPipeline" and traj.params["height"] == side != 48
    seen = pipes_own(pipe, steps=3, strength=0.8, guidance=3.5, image=start, mask=mask, control_image=control)
    last = type(pipe)._unpack_latents(seen[-1][None], side, side, pipe.vae_scale_factor)[0]
    assert len(traj) == len(seen) and torch.equal(traj.final_latents, last)
    assert torch.equal(nbd.branch(pipe, traj, 0).final_latents, traj.final_latents)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_flux_fill_in_its_family_loop(strength, tmp_path):
    """FluxFillPipeline: a transformer that reads the masked picture's latents and the mask (each latent pixel's
    block of the full-size mask as channels), packed after x_t in that order; the start picture encoded at strength
    1 too; its own default guidance (30) where a UI starts."""
    from diffusers import FluxFillPipeline, FluxTransformer2DModel
    from nbdiffuse.testing import tiny_flux_pipeline

    parts = tiny_flux_pipeline().components
    config = {k: v for k, v in parts["transformer"].config.items() if not k.startswith("_")}
    f = 2 ** (len(parts["vae"].config.block_out_channels) - 1)
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(**{**config, "in_channels": config["in_channels"] * 2 + 4 * f * f,
                                            "out_channels": config["in_channels"]})
    takes = inspect.signature(FluxFillPipeline.__init__).parameters
    pipe = FluxFillPipeline(**{k: v for k, v in {**parts, "transformer": transformer}.items() if k in takes})
    pipe.default_sample_size = 4
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=30.0, seed=1, image=picture(), strength=strength,
                     mask_image=square_mask(), height=SIZE, width=SIZE)
    seen = pipes_own(pipe, steps=3, strength=strength, guidance=30.0, height=SIZE, width=SIZE)
    unpacked = [type(pipe)._unpack_latents(own[None], SIZE, SIZE, pipe.vae_scale_factor)[0] for own in seen]
    assert len(traj) == len(seen) and all(torch.equal(step.latents, own) for step, own in zip(traj, unpacked))
    assert nbd.core.families.default_guidance(pipe) == 30.0
    traj.save(tmp_path / "fill.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "fill.nbd")
    assert torch.equal(nbd.branch(pipe, loaded, 0).final_latents, traj.final_latents)
