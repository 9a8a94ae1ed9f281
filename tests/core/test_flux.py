"""FluxPipeline: packed latents, distilled guidance (dev) and true CFG (schnell), against pipe(...)."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.decode import approx_decoder_for
from nbdiffuse.core.families import family_for
from nbdiffuse.core.families.flux import pack, unpack

PROMPT = "big red circle on the left"
SIZE = {"height": 32, "width": 48}  # 16 x 24 latents: non-square catches a swapped unpack
LATENT = (16, 16, 24)


def pipe_latents(pipe, steps, seed, **kw):
    """FluxPipeline's own result, unpacked to (C, h, w)."""
    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(PROMPT, num_inference_steps=steps, generator=generator, output_type="latent", **SIZE, **kw).images
    return unpack(out, LATENT[1], LATENT[2])[0]


def test_pack_is_diffusers_packing():
    x = torch.randn(1, 16, 6, 4)
    from diffusers import FluxPipeline

    assert torch.equal(pack(x), FluxPipeline._pack_latents(x, 1, 16, 6, 4))
    assert torch.equal(unpack(pack(x), 6, 4), x)


def test_distilled_guidance_matches_flux_pipeline_bit_for_bit(flux_pipe):
    traj = nbd.trace(flux_pipe, PROMPT, steps=4, guidance=3.5, seed=3, **SIZE)
    assert torch.equal(traj.final_latents, pipe_latents(flux_pipe, 4, 3, guidance_scale=3.5))


def test_true_cfg_matches_flux_pipeline_bit_for_bit(flux_schnell_pipe):
    traj = nbd.trace(flux_schnell_pipe, PROMPT, steps=3, guidance=4.0, seed=2, negative_prompt="blue", **SIZE)
    expected = pipe_latents(flux_schnell_pipe, 3, 2, true_cfg_scale=4.0, negative_prompt="blue")
    assert torch.equal(traj.final_latents, expected)
    plain = nbd.trace(flux_schnell_pipe, PROMPT, steps=3, guidance=1.0, seed=2, **SIZE)
    assert torch.equal(plain.final_latents, pipe_latents(flux_schnell_pipe, 3, 2))


def test_records_unpacked_latents_and_x0(flux_pipe):
    traj = nbd.trace(flux_pipe, PROMPT, steps=4, guidance=3.5, seed=0, **SIZE)
    assert traj.params["family"] == "flux" and traj.params["guidance_kind"] == "distilled"
    assert tuple(traj.initial_latents.shape) == (1, *LATENT)
    for step in traj:
        assert step.latents.shape == step.pred_x0.shape == step.eps_cond.shape == LATENT
        assert step.eps_uncond is None and step.guidance == 3.5 and step.xt_scale == 1.0
    assert traj[0].sigma == 1.0
    # Flow matching, x0 = x_t - sigma * v: the last step lands on its own prediction.
    torch.testing.assert_close(traj[-1].pred_x0, traj.final_latents, rtol=1e-5, atol=1e-5)
    step = traj[1]
    x_t = traj[0].latents
    torch.testing.assert_close(step.pred_x0, x_t - step.sigma * step.eps_cond, rtol=1e-5, atol=1e-5)


def test_distilled_guidance_is_one_model_input_per_step(flux_pipe, model_calls):
    calls = model_calls(flux_pipe.transformer)
    low = nbd.trace(flux_pipe, PROMPT, steps=3, guidance=[1.0, 4.0, 8.0], seed=0, **SIZE)
    assert calls.count == 3  # one evaluation per step at any guidance: it is not CFG
    assert low.guidances == [1.0, 4.0, 8.0] and all(s.eps_uncond is None for s in low)
    high = nbd.trace(flux_pipe, PROMPT, steps=3, guidance=8.0, seed=0, **SIZE)
    # Step 0 sees the same x_t; the guidance input alone changes the prediction.
    assert not torch.allclose(low[0].eps_cond, high[0].eps_cond)


def test_live_guidance_reaches_the_model(flux_pipe):
    control = nbd.RunControl()
    seen = []

    def on_step(traj, step):
        seen.append(step.guidance)
        control.set_guidance(6.0)  # from step 1 on

    traj = nbd.trace(flux_pipe, PROMPT, steps=3, guidance=2.0, seed=1, control=control, on_step=on_step, **SIZE)
    assert seen == [2.0, 6.0, 6.0] and traj.params["guidance"] == [2.0, 6.0, 6.0]
    again = nbd.trace(flux_pipe, PROMPT, steps=3, guidance=[2.0, 6.0, 6.0], seed=1, **SIZE)
    assert torch.equal(traj.final_latents, again.final_latents)


def test_guided_x0_with_distilled_guidance(flux_pipe):
    traj = nbd.trace(flux_pipe, PROMPT, steps=3, guidance=3.5, seed=0, **SIZE)
    assert torch.equal(traj.guided_x0(1, 3.5), traj[1].pred_x0)
    # No (cond, uncond) pair to re-weigh: a what-if needs a model call. The trajectory says why.
    with pytest.raises(ValueError, match="distilled guidance.*no unconditional prediction.*nbd.branch"):
        traj.guided_x0(1, 7.0)
    assert not traj[1].guided


def test_true_cfg_pairs_and_guided_x0(flux_schnell_pipe, model_calls):
    calls = model_calls(flux_schnell_pipe.transformer)
    traj = nbd.trace(flux_schnell_pipe, PROMPT, steps=3, guidance=[4.0, 1.0, 4.0], seed=0, **SIZE)
    assert calls.count == 5 and traj.params["guidance_kind"] == "cfg"
    assert [s.eps_uncond is not None for s in traj] == [True, False, True]
    other = nbd.trace(flux_schnell_pipe, PROMPT, steps=3, guidance=9.0, seed=0, **SIZE)
    assert torch.equal(traj.guided_x0(0, 4.0), traj[0].pred_x0)
    torch.testing.assert_close(traj.guided_x0(0, 9.0), other[0].pred_x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(traj[-1].pred_x0, traj.final_latents, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fixture", ["flux_pipe", "flux_schnell_pipe"])
def test_branch_replays_and_changes(fixture, request):
    pipe = request.getfixturevalue(fixture)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=3.0, seed=5, **SIZE)
    same = nbd.branch(pipe, traj, at=1)
    assert torch.equal(same.final_latents, traj.final_latents) and same.steps[:2] == traj.steps[:2]
    stronger = nbd.branch(pipe, traj, at=1, guidance=7.0)
    assert stronger.guidances == [3.0, 3.0, 7.0, 7.0]
    assert not torch.allclose(stronger.final_latents, traj.final_latents)
    heun = nbd.branch(pipe, traj, at=1, scheduler="heun")
    assert heun.params["scheduler"] == "heun" and heun[-1].latents.shape == LATENT
    assert torch.isfinite(heun.final_latents).all()


def test_previews_have_the_image_size(flux_pipe):
    traj = nbd.trace(flux_pipe, PROMPT, steps=2, guidance=3.5, seed=0, **SIZE)
    approx = approx_decoder_for(flux_pipe.vae)
    assert approx.weight.shape == (16, 3)  # fitted to the 16-channel VAE
    for view in ("x0", "xt"):
        for decoder in ("approx", "full"):
            assert traj.image(0, view=view, decoder=decoder).size == (48, 32)
    assert traj.image(-1, decoder="approx", size="latent").size == (24, 16)


def test_sizes_and_defaults(flux_pipe):
    family = family_for(flux_pipe)
    assert family.vae_factor == 4 and family.latent_channels == 16 and family.default_size() == (32, 32)
    assert family.default_guidance == 3.5
    assert family_for(flux_pipe).guidance_kind == "distilled"
    with pytest.raises(ValueError, match="multiple of 4"):
        nbd.trace(flux_pipe, PROMPT, steps=2, height=30, width=32)
    assert nbd.schedulers(flux_pipe) == ["euler", "heun"]


def test_saved_folder_loads_and_traces(flux_pipe, tmp_path):
    flux_pipe.save_pretrained(tmp_path / "tiny-flux", safe_serialization=True)
    pipe = nbd.load_pipeline(tmp_path / "tiny-flux", device="cpu")
    assert type(pipe).__name__ == "FluxPipeline" and family_for(pipe).guidance_kind == "distilled"
    a = nbd.trace(pipe, PROMPT, steps=2, guidance=3.5, seed=1, **SIZE)
    b = nbd.trace(flux_pipe, PROMPT, steps=2, guidance=3.5, seed=1, **SIZE)
    # Same weights; safetensors' memory-mapped (differently aligned) tensors may take other SIMD paths.
    torch.testing.assert_close(a.final_latents, b.final_latents, rtol=1e-5, atol=1e-5)
    path = tmp_path / "run.nbd"
    a.save(path)
    back = nbd.Trajectory.load(path, pipe=pipe)
    assert back.params["guidance_kind"] == "distilled" and back.image(-1).size == (48, 32)
