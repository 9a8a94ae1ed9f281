"""SD3's ControlNet in nbdiffuse's own loop (core/controlnet_sd3.py): parity with StableDiffusion3ControlNetPipeline
(one and several ControlNets, windows, guided and not), strength per step, live scale, branches, files, loading,
and what it refuses."""
import sys
from pathlib import Path

import pytest
import torch

import nbdiffuse as nbd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline_zoo"))
import builders_control  # noqa: E402

from control_helpers import assert_live_scale_is_the_plan, picture  # noqa: E402

PROMPT = "big red circle on the left"




@pytest.fixture(scope="module")
def sd3_control():
    return builders_control.sd3_controlnet()


@pytest.fixture(scope="module")
def sd3_two():
    return builders_control.sd3_controlnet(nets=2)


def reference(pipe, control_image, steps, guidance, seed, **kwargs):
    """pipe(...) as a notebook reproduces it: its control latents come from torch's global generator."""
    torch.manual_seed(seed)
    return pipe(PROMPT, control_image=control_image, num_inference_steps=steps, guidance_scale=guidance, height=16,
                width=16, generator=torch.Generator().manual_seed(seed), output_type="latent", **kwargs).images[0]


@pytest.mark.parametrize("guidance, scale, start, end", [(7.0, 1.0, 0.0, 1.0), (1.0, 0.7, 0.2, 0.8),
                                                         (5.0, 1.6, 0.25, 0.6)])
def test_trace_matches_the_sd3_controlnet_pipeline_bit_for_bit(sd3_control, guidance, scale, start, end):
    control = picture()
    traj = nbd.trace(sd3_control, PROMPT, steps=6, guidance=guidance, seed=3, control_image=control,
                     control_scale=scale, control_start=start, control_end=end)
    expected = reference(sd3_control, control, 6, guidance, 3, controlnet_conditioning_scale=scale,
                         control_guidance_start=start, control_guidance_end=end)
    assert torch.equal(traj.final_latents, expected)
    assert traj.params["family"] == "stable-diffusion-3"
    acting = [start <= k / 6 and (k + 1) / 6 <= end for k in range(6)]
    assert [s.control_strength > 0 for s in traj.steps] == acting
    assert [s.control_scale for s in traj.steps] == [scale] * 6
    assert traj[5].pred_x0 is not None  # the model's own x0 at every step: the family's views


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_several_sd3_controlnets_match_the_pipeline(sd3_two, guidance):
    pictures = [picture(1), picture(2)]
    traj = nbd.trace(sd3_two, PROMPT, steps=5, guidance=guidance, seed=2, control_image=pictures,
                     control_scale=[0.9, 0.4], control_start=[0.0, 0.2], control_end=[0.8, 1.0])
    expected = reference(sd3_two, pictures, 5, guidance, 2, controlnet_conditioning_scale=[0.9, 0.4],
                         control_guidance_start=[0.0, 0.2], control_guidance_end=[0.8, 1.0])
    assert torch.equal(traj.final_latents, expected)
    assert traj.steps[0].control_scale == [0.9, 0.4]
    swapped = nbd.trace(sd3_two, PROMPT, steps=5, guidance=guidance, seed=2, control_image=pictures[::-1],
                        control_scale=[0.9, 0.4], control_start=[0.0, 0.2], control_end=[0.8, 1.0])
    assert not torch.equal(swapped.final_latents, traj.final_latents)  # each ControlNet reads its own picture


def test_scale_zero_is_the_plain_model_and_the_picture_steers(sd3_control):
    from diffusers import StableDiffusion3Pipeline

    plain = StableDiffusion3Pipeline.from_pipe(sd3_control)
    run = dict(steps=4, guidance=7.0, seed=1, height=16, width=16)
    base = nbd.trace(plain, PROMPT, **run)
    off = nbd.trace(sd3_control, PROMPT, control_image=picture(), control_scale=0.0, **run)
    assert torch.equal(off.final_latents, base.final_latents)
    assert all(s.control_strength == 0.0 for s in off.steps)
    one = nbd.trace(sd3_control, PROMPT, control_image=picture(1), **run)
    other = nbd.trace(sd3_control, PROMPT, control_image=picture(2), **run)
    assert not torch.equal(one.final_latents, other.final_latents)
    # the control latents come from the run's seed, not the notebook's random state
    torch.manual_seed(99)
    again = nbd.trace(sd3_control, PROMPT, control_image=picture(1), **run)
    assert torch.equal(again.final_latents, one.final_latents)


def test_live_scale_branches_and_files(sd3_control, tmp_path):
    run = dict(steps=6, guidance=7.0, seed=1, control_image=picture())
    planned = assert_live_scale_is_the_plan(sd3_control, PROMPT, 2, **run)
    traj = nbd.trace(sd3_control, PROMPT, **run)
    assert torch.equal(nbd.branch(sd3_control, traj, 2).final_latents, traj.final_latents)
    off = nbd.branch(sd3_control, traj, 2, control_scale=0.0)
    assert torch.equal(off.final_latents, planned.final_latents)
    # a branch with another noise seed keeps the run's control latents (they are the parent's)
    reseeded = nbd.branch(sd3_control, traj, 2, seed=7)
    assert torch.equal(reseeded.final_latents, traj.final_latents)  # FlowMatchEuler draws no noise
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    loaded = nbd.Trajectory.load(path)
    assert loaded.params["control"] == traj.params["control"]
    assert torch.equal(nbd.branch(sd3_control, loaded, 3).final_latents, traj.final_latents)
    curve = nbd.decision_curve_of(sd3_control, traj, samples=1, at=[2])  # continuations keep the control
    assert curve.steps == [2]


def test_what_sd3_cannot_do_is_refused_by_name(sd3_control):
    with pytest.raises(ValueError, match=r"control_guess_mode=True: SD3ControlNetModel has no guess mode"):
        nbd.trace(sd3_control, PROMPT, steps=2, control_image=picture(), control_guess_mode=True)
    with pytest.raises(ValueError, match=r"control_scale must be a number from 0 to 10.*got 11"):
        nbd.trace(sd3_control, PROMPT, steps=2, control_image=picture(), control_scale=11)


def test_load_pipeline_joins_sd3_and_flux_controlnets(sd3_control, tmp_path):
    from diffusers import StableDiffusion3Pipeline

    from nbdiffuse.core.sources import PipelineLoadError
    from nbdiffuse.testing import tiny_controlnet_pipeline, tiny_flux_controlnet_pipeline, tiny_flux_pipeline

    base = StableDiffusion3Pipeline.from_pipe(sd3_control)
    sd3_control.controlnet.save_pretrained(tmp_path / "sd3net")
    joined = nbd.load_pipeline(base, controlnet=str(tmp_path / "sd3net"))
    assert type(joined).__name__ == "StableDiffusion3ControlNetPipeline"
    run = dict(steps=3, guidance=7.0, seed=4, control_image=picture())
    assert torch.equal(nbd.trace(joined, PROMPT, **run).final_latents,
                       nbd.trace(sd3_control, PROMPT, **run).final_latents)
    two = nbd.load_pipeline(base, controlnet=[str(tmp_path / "sd3net"), sd3_control.controlnet])
    assert type(two.controlnet).__name__ == "SD3MultiControlNetModel"
    # another model's kind of ControlNet is refused before its weights load, naming both
    tiny_controlnet_pipeline().controlnet.save_pretrained(tmp_path / "sdnet")
    with pytest.raises(PipelineLoadError, match=r"is a ControlNetModel; a StableDiffusion3Pipeline takes a "
                                                r"SD3ControlNetModel"):
        nbd.load_pipeline(base, controlnet=str(tmp_path / "sdnet"))
    with pytest.raises(ValueError, match=r"controlnet\[1\] is a ControlNetModel; .* takes a SD3ControlNetModel"):
        nbd.load_pipeline(base, controlnet=[sd3_control.controlnet, tiny_controlnet_pipeline().controlnet])
    flux = nbd.load_pipeline(tiny_flux_pipeline(), controlnet=tiny_flux_controlnet_pipeline().controlnet)
    assert type(flux).__name__ == "FluxControlNetPipeline"
