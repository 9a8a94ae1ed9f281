"""Flux's ControlNet in nbdiffuse's own loop (core/controlnet_flux.py): parity with FluxControlNetPipeline
(guidance-distilled and true guidance, one and several ControlNets, windows), strength per step, live scale,
branches (a sampler that draws noise too), files, and what runs elsewhere or is refused."""
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

import nbdiffuse as nbd
from nbdiffuse.core.families import family_for
from nbdiffuse.core.families.flux import pack
from nbdiffuse.testing import tiny_flux_controlnet_pipeline

from control_helpers import assert_live_scale_is_the_plan, picture as noise_picture

PROMPT = "a red circle"


def picture(seed=0, side=32):
    return noise_picture(seed, side)


@pytest.fixture(scope="module")
def flux_control():
    return tiny_flux_controlnet_pipeline()


def reference(pipe, steps, seed, **kwargs):
    """FluxControlNetPipeline's own latents, packed as it returns them."""
    return pipe(PROMPT, num_inference_steps=steps, height=32, width=32, output_type="latent",
                generator=torch.Generator().manual_seed(seed), **kwargs).images


def same(traj, packed) -> bool:
    return torch.equal(pack(traj.final_latents[None]), packed)


@pytest.mark.parametrize("guidance, scale, start, end", [(3.5, 1.0, 0.0, 1.0), (1.0, 0.7, 0.2, 0.8),
                                                         (5.0, 1.4, 0.0, 0.5)])
def test_trace_matches_the_flux_controlnet_pipeline_bit_for_bit(flux_control, guidance, scale, start, end):
    control = picture()
    traj = nbd.trace(flux_control, PROMPT, steps=4, guidance=guidance, seed=3, control_image=control,
                     control_scale=scale, control_start=start, control_end=end)
    assert traj.params["family"] == "flux"
    assert same(traj, reference(flux_control, 4, 3, guidance_scale=guidance, control_image=control,
                                controlnet_conditioning_scale=scale, control_guidance_start=start,
                                control_guidance_end=end))
    acting = [start <= k / 4 and (k + 1) / 4 <= end for k in range(4)]
    assert [s.control_strength > 0 for s in traj.steps] == acting
    assert traj[3].pred_x0 is not None


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_a_flux_with_true_guidance_gives_both_evaluations_the_residuals(guidance):
    pipe = tiny_flux_controlnet_pipeline(guidance_embeds=False)
    control = picture(1)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=guidance, seed=2, control_image=control, control_scale=0.8)
    assert same(traj, reference(pipe, 3, 2, true_cfg_scale=guidance, negative_prompt="", control_image=control,
                                controlnet_conditioning_scale=0.8))
    assert (traj[0].eps_uncond is not None) is (guidance > 1)


def test_several_flux_controlnets_match_the_pipeline():
    pipe = tiny_flux_controlnet_pipeline(nets=2)
    pictures = [picture(1), picture(2)]
    run = dict(control_scale=[0.9, 0.4], control_start=[0.0, 0.3], control_end=[1.0, 1.0])
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=3.5, seed=3, control_image=pictures, **run)
    assert same(traj, reference(pipe, 3, 3, guidance_scale=3.5, control_image=pictures,
                                controlnet_conditioning_scale=[0.9, 0.4], control_guidance_start=[0.0, 0.3],
                                control_guidance_end=[1.0, 1.0]))
    assert traj.steps[0].control_scale == [0.9, 0.4]


def test_scale_zero_is_the_plain_model_after_the_same_draws(flux_control):
    from diffusers import FluxPipeline

    run = dict(steps=3, guidance=3.5, seed=1, height=32, width=32)
    off = nbd.trace(flux_control, PROMPT, control_image=picture(), control_scale=0.0, **run)
    assert all(s.control_strength == 0.0 for s in off.steps)
    # the pipeline draws the picture's latents before the noise: its start noise is the plain run's only without one
    plain = nbd.trace(FluxPipeline.from_pipe(flux_control), PROMPT, **run)
    assert not torch.equal(off.initial_latents, plain.initial_latents)
    assert torch.equal(nbd.trace(flux_control, PROMPT, **run).final_latents, plain.final_latents)
    one = nbd.trace(flux_control, PROMPT, control_image=picture(1), **run)
    assert not torch.equal(one.final_latents, nbd.trace(flux_control, PROMPT, control_image=picture(2),
                                                        **run).final_latents)


def test_live_scale_branches_and_files(flux_control, tmp_path):
    run = dict(steps=4, guidance=3.5, seed=1, control_image=picture())
    planned = assert_live_scale_is_the_plan(flux_control, PROMPT, 1, **run)
    traj = nbd.trace(flux_control, PROMPT, **run)
    assert torch.equal(nbd.branch(flux_control, traj, 1, control_scale=0.0).final_latents, planned.final_latents)
    # a sampler that draws noise every step: a branch replays the run's draws, the control latents' first
    noisy = FlowMatchEulerDiscreteScheduler.from_config(flux_control.scheduler.config, stochastic_sampling=True)
    drawn = nbd.trace(flux_control, PROMPT, scheduler=noisy, **run)
    assert torch.equal(nbd.branch(flux_control, drawn, 1).final_latents, drawn.final_latents)
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    loaded = nbd.Trajectory.load(path)
    assert loaded.params["control"] == traj.params["control"]
    assert torch.equal(nbd.branch(flux_control, loaded, 2).final_latents, traj.final_latents)


def test_a_union_controlnet_reads_the_kind_of_picture_it_is_told(tmp_path):
    """control_mode: which kind of picture a union ControlNet reads (core/control_mode.py), bit for bit
    pipe(..., control_mode=m); kept by files and branches, changed by a branch."""
    union = tiny_flux_controlnet_pipeline(union=True)
    assert family_for(union).name == "flux"
    control = picture()
    runs = {}
    for mode in (0, 2):
        runs[mode] = nbd.trace(union, PROMPT, steps=3, guidance=3.5, seed=1, control_image=control, control_mode=mode)
        assert same(runs[mode], reference(union, 3, 1, guidance_scale=3.5, control_image=control, control_mode=mode))
        assert runs[mode].params["control"]["mode"] == mode
    assert not torch.equal(runs[0].final_latents, runs[2].final_latents)
    runs[0].save(tmp_path / "union.nbd", frames=False)
    loaded = nbd.Trajectory.load(tmp_path / "union.nbd")
    assert loaded.params["control"]["mode"] == 0
    assert torch.equal(nbd.branch(union, loaded, 1).final_latents, runs[0].final_latents)
    other = nbd.branch(union, runs[0], 1, control_mode=2)
    assert other.params["control"]["mode"] == 2 and not torch.equal(other.final_latents, runs[0].final_latents)
    with pytest.raises(ValueError, match=r"control_mode: FluxControlNetModel is a union ControlNet: say which kind "
                                         r"of picture the control picture is, a number from 0 to 2"):
        nbd.trace(union, PROMPT, steps=2, control_image=control)
    with pytest.raises(ValueError, match=r"control_mode must be a number from 0 to 2 .*got 3"):
        nbd.trace(union, PROMPT, steps=2, control_image=control, control_mode=3)
    with pytest.raises(TypeError, match=r"control_mode must be a number from 0 to 2 .*got True"):
        nbd.trace(union, PROMPT, steps=2, control_image=control, control_mode=True)
    with pytest.raises(ValueError, match=r"control_mode=1 needs a control picture"):
        nbd.trace(union, PROMPT, steps=2, control_mode=1)


def test_what_is_refused(flux_control):
    with pytest.raises(ValueError, match=r"control_guess_mode=True: FluxControlNetModel has no guess mode"):
        nbd.trace(flux_control, PROMPT, steps=2, control_image=picture(), control_guess_mode=True)
    with pytest.raises(ValueError, match=r"control_mode=1: FluxControlNetModel is not a union ControlNet"):
        nbd.trace(flux_control, PROMPT, steps=2, control_image=picture(), control_mode=1)


def test_image_to_image_controlnet_pipelines_run_in_the_family_loop():
    """FluxControlNetImg2ImgPipeline (and SD's, SDXL's: the pipeline matrix) in the family loop: bit for bit its
    pipe(...), the control latents drawn before the picture's and the noise; a branch replays those draws."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline_zoo"))
    import builders_control

    pipe = builders_control.flux_controlnet_img2img()
    start, control = picture(5), picture(1)
    run = dict(steps=4, guidance=3.5, seed=2, height=32, width=32, image=start, strength=0.6, control_image=control)
    traj = nbd.trace(pipe, PROMPT, **run)
    assert traj.params["family"] == "flux" and len(traj) == 3 and traj[0].control_strength > 0
    assert same(traj, reference(pipe, 4, 2, guidance_scale=3.5, image=start, strength=0.6, control_image=control))
    noisy = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, stochastic_sampling=True)
    drawn = nbd.trace(pipe, PROMPT, scheduler=noisy, **run)
    assert torch.equal(nbd.branch(pipe, drawn, 0).final_latents, drawn.final_latents)


def test_a_controlnet_that_reads_the_picture_itself():
    """An XLabs-style Flux ControlNet (input_hint_block): it reads the pixels (no VAE sample, so the start noise
    is the plain run's) and the transformer repeats its residuals over its blocks, bit for bit pipe(...). Its
    2 blocks over the transformer's 4 tell the two rules apart: repeated (0, 1, 0, 1), not spread (0, 0, 1, 1)."""
    from diffusers import (AutoencoderKL, FluxControlNetModel, FluxControlNetPipeline, FluxPipeline,
                           FluxTransformer2DModel)

    from nbdiffuse.testing import seeded_weights

    base = tiny_flux_controlnet_pipeline()
    torch.manual_seed(0)  # a VAE that downsamples by 8, as the hint block does
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=16,
                        scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                        use_post_quant_conv=False).eval()
    config = base.transformer.config
    torch.manual_seed(0)
    deeper = FluxTransformer2DModel.from_config({**config, "num_layers": 4}).eval()
    torch.manual_seed(0)
    net = FluxControlNetModel(patch_size=2, in_channels=config.in_channels, num_layers=2, num_single_layers=1,
                              attention_head_dim=config.attention_head_dim,
                              num_attention_heads=config.num_attention_heads,
                              joint_attention_dim=config.joint_attention_dim,
                              pooled_projection_dim=config.pooled_projection_dim, guidance_embeds=True,
                              axes_dims_rope=list(config.axes_dims_rope),
                              conditioning_embedding_channels=config.in_channels // 4)
    seeded_weights([*net.controlnet_blocks, *net.controlnet_single_blocks, net.controlnet_x_embedder,
                    net.input_hint_block.conv_out])
    pipe = FluxControlNetPipeline.from_pipe(base, vae=vae, transformer=deeper, controlnet=net.eval())
    run = dict(steps=3, guidance=3.5, seed=1, height=64, width=64)
    pictures = [picture(0, 64), picture(1, 64)]
    traj = nbd.trace(pipe, PROMPT, control_image=pictures[0], **run)
    out = pipe(PROMPT, num_inference_steps=3, guidance_scale=3.5, height=64, width=64, control_image=pictures[0],
               output_type="latent", generator=torch.Generator().manual_seed(1)).images
    assert torch.equal(pack(traj.final_latents[None]), out)
    assert not torch.equal(traj.final_latents, nbd.trace(pipe, PROMPT, control_image=pictures[1], **run).final_latents)
    plain = nbd.trace(FluxPipeline.from_pipe(pipe), PROMPT, **run)
    assert torch.equal(traj.initial_latents, plain.initial_latents)


def test_without_a_size_the_run_keeps_the_pipelines_usual_size(flux_control):
    """FluxControlNetPipeline's default size is its usual one, whatever the control picture's (SD's and SDXL's
    take the picture's); a trace without height/width runs what pipe(...) without them runs."""
    control = picture(0, 48)
    traj = nbd.trace(flux_control, PROMPT, steps=2, guidance=3.5, seed=1, control_image=control)
    assert (traj.params["height"], traj.params["width"]) == (32, 32)
    out = flux_control(PROMPT, num_inference_steps=2, guidance_scale=3.5, control_image=control, output_type="latent",
                       generator=torch.Generator().manual_seed(1)).images
    assert torch.equal(pack(traj.final_latents[None]), out)
