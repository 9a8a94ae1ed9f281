"""SDXL's union ControlNet in nbdiffuse's own loop (core/controlnet_unet.py): parity with
StableDiffusionXLControlNetUnionPipeline for each kind of picture (control_mode), guided and not, windows,
two union ControlNets; guess mode; a branch that changes the kind."""
import sys
from pathlib import Path

import pytest
import torch

import nbdiffuse as nbd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline_zoo"))
import builders_control  # noqa: E402

from control_helpers import picture  # noqa: E402

PROMPT = "a red circle"




@pytest.fixture(scope="module")
def union():
    return builders_control.sdxl_controlnet_union()


def reference(pipe, steps, guidance, seed, **kwargs):
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=16, width=16, output_type="latent",
                generator=torch.Generator().manual_seed(seed), **kwargs).images[0]


@pytest.mark.parametrize("guidance, mode, start, end, guess", [(5.0, 3, 0.0, 1.0, False), (1.0, 0, 0.0, 1.0, False),
                                                               (5.0, 1, 0.25, 0.75, False), (1.0, 2, 0.0, 1.0, True)])
def test_trace_matches_the_union_pipeline_bit_for_bit(union, guidance, mode, start, end, guess):
    control = picture()
    traj = nbd.trace(union, PROMPT, steps=4, guidance=guidance, seed=1, control_image=control, control_mode=mode,
                     control_start=start, control_end=end, control_guess_mode=guess)
    assert traj.params["family"] == "stable-diffusion-xl" and traj.params["control"]["mode"] == mode
    assert torch.equal(traj.final_latents, reference(union, 4, guidance, 1, control_image=control, control_mode=mode,
                                                     control_guidance_start=start, control_guidance_end=end,
                                                     guess_mode=guess))
    assert [s.control_strength > 0 for s in traj.steps] == [start <= k / 4 and (k + 1) / 4 <= end for k in range(4)]


def test_the_kind_of_picture_steers_and_a_branch_changes_it(union):
    run = dict(steps=4, guidance=5.0, seed=1, control_image=picture())
    edges = nbd.trace(union, PROMPT, control_mode=3, **run)
    depth = nbd.trace(union, PROMPT, control_mode=1, **run)
    assert not torch.equal(edges.final_latents, depth.final_latents)
    assert torch.equal(nbd.branch(union, edges, 1).final_latents, edges.final_latents)
    changed = nbd.branch(union, edges, 1, control_mode=1)
    assert changed.params["control"]["mode"] == 1 and not torch.equal(changed.final_latents, edges.final_latents)
    # guess mode with guidance: the ControlNet reads the prompt's row, given its kind for that one row (the
    # pipeline's own loop repeats the kind for two rows there, and fails)
    guessed = nbd.trace(union, PROMPT, control_mode=3, control_guess_mode=True, **run)
    assert guessed.params["control"]["guess_mode"] and not torch.equal(guessed.final_latents, edges.final_latents)


def test_two_union_controlnets_match_the_pipeline():
    from diffusers import StableDiffusionXLControlNetUnionPipeline
    from diffusers.models.controlnets.multicontrolnet_union import MultiControlNetUnionModel

    one = builders_control.sdxl_controlnet_union()
    other = builders_control.sdxl_controlnet_union().controlnet
    with torch.no_grad():
        for p in other.controlnet_down_blocks.parameters():
            p.mul_(-2.0)  # another ControlNet
    pipe = StableDiffusionXLControlNetUnionPipeline.from_pipe(
        one, controlnet=MultiControlNetUnionModel([one.controlnet, other]))
    pictures = [picture(1), picture(2)]
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=5.0, seed=2, control_image=pictures, control_mode=[3, 0],
                     control_scale=[0.8, 0.5])
    assert traj.params["control"]["mode"] == [3, 0]
    assert torch.equal(traj.final_latents, reference(pipe, 3, 5.0, 2, control_image=pictures, control_mode=[3, 0],
                                                     controlnet_conditioning_scale=[0.8, 0.5]))


def test_load_pipeline_joins_a_union_controlnet_by_its_config(union, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from nbdiffuse.testing import tiny_controlnet_pipeline

    base = StableDiffusionXLPipeline.from_pipe(union)
    union.controlnet.save_pretrained(tmp_path / "union")
    joined = nbd.load_pipeline(base, controlnet=str(tmp_path / "union"))
    assert type(joined).__name__ == "StableDiffusionXLControlNetUnionPipeline"
    run = dict(steps=2, guidance=5.0, control_image=picture(), control_mode=3)
    assert torch.equal(nbd.trace(joined, PROMPT, **run).final_latents, nbd.trace(union, PROMPT, **run).final_latents)
    plain = tiny_controlnet_pipeline(xl=True).controlnet
    assert type(nbd.load_pipeline(base, controlnet=plain)).__name__ == "StableDiffusionXLControlNetPipeline"
    with pytest.raises(ValueError, match=r"several ControlNets run together must be of one kind; got "
                                         r"ControlNetUnionModel, ControlNetModel"):
        nbd.load_pipeline(base, controlnet=[str(tmp_path / "union"), plain])


def test_several_pictures_for_one_union_controlnet_run_the_pipelines_own_loop(union):
    """Diffusers' lists (one union ControlNet given an edge map and a depth map, a kind each) through pipe_kwargs:
    nbdiffuse's loop takes one picture per ControlNet, so the pipeline's own loop runs them, bit for bit."""
    pictures, modes = [picture(1), picture(2)], [3, 1]
    traj = nbd.trace(union, PROMPT, steps=3, guidance=5.0, seed=2, height=16, width=16,
                     pipe_kwargs={"control_image": pictures, "control_mode": modes})
    assert traj.params["family"] == "generic" and "control" not in traj.params
    assert torch.equal(traj.final_latents, reference(union, 3, 5.0, 2, control_image=pictures, control_mode=modes))
    with pytest.raises(ValueError, match="does not honour it"):  # anything else the family's loop refuses by name
        nbd.trace(union, PROMPT, steps=2, control_image=picture(), control_mode=3, pipe_kwargs={"eta": 0.5})
