"""PixArt-alpha / -sigma: a DiT with learned sigma and a T5 encoder, against pipe(...)."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.decode import approx_decoder_for
from nbdiffuse.core.families import family_for

PROMPT = "big red circle on the left"


def pipe_latents(pipe, steps, guidance, seed, **kw):
    # trace() runs the size asked for and the prompt as typed: no binning, no caption cleaning.
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="latent",
                use_resolution_binning=False, clean_caption=False, **kw).images[0]


@pytest.mark.parametrize("fixture", ["pixart_pipe", "pixart_alpha_pipe"])
@pytest.mark.parametrize("guidance", [4.5, 1.0])
def test_trace_matches_pixart_pipeline_bit_for_bit(fixture, guidance, request):
    pipe = request.getfixturevalue(fixture)
    traj = nbd.trace(pipe, PROMPT, steps=5, guidance=guidance, seed=3)
    assert torch.equal(traj.final_latents, pipe_latents(pipe, 5, guidance, seed=3))


def test_non_square_matches(pixart_pipe):
    traj = nbd.trace(pixart_pipe, PROMPT, steps=3, guidance=3.0, seed=1, height=16, width=24, negative_prompt="blue")
    expected = pipe_latents(pixart_pipe, 3, 3.0, seed=1, height=16, width=24, negative_prompt="blue")
    assert traj.final_latents.shape == (4, 8, 12) and torch.equal(traj.final_latents, expected)


def test_learned_sigma_is_dropped_and_x0_is_right(pixart_pipe):
    assert pixart_pipe.transformer.config.out_channels == 8 and family_for(pixart_pipe).learned_sigma
    traj = nbd.trace(pixart_pipe, PROMPT, steps=6, guidance=4.5, seed=0)
    assert traj.params["family"] == "pixart-sigma" and traj.params["guidance_kind"] == "cfg"
    for step in traj:
        assert step.latents.shape == step.pred_x0.shape == step.eps_cond.shape == step.eps_uncond.shape == (4, 8, 8)
    # The last step of DPM-Solver++ lands on x0 up to the last sigma's share.
    torch.testing.assert_close(traj[-1].pred_x0, traj.final_latents, rtol=1e-3, atol=1e-3)


def test_guided_x0_reweighs_the_pair(pixart_pipe):
    traj = nbd.trace(pixart_pipe, PROMPT, steps=4, guidance=4.5, seed=2)
    other = nbd.trace(pixart_pipe, PROMPT, steps=4, guidance=9.0, seed=2)
    assert torch.equal(traj.guided_x0(2, 4.5), traj[2].pred_x0)
    torch.testing.assert_close(traj.guided_x0(0, 9.0), other[0].pred_x0, rtol=1e-4, atol=1e-4)


def test_guidance_crosses_one_both_ways(pixart_pipe, model_calls):
    calls = model_calls(pixart_pipe.transformer)
    traj = nbd.trace(pixart_pipe, PROMPT, steps=4, guidance=[5, 1, 0.5, 5], seed=0)
    assert calls.count == 4  # CFG runs cond and uncond as one batch
    assert [s.eps_uncond is not None for s in traj] == [True, False, False, True]
    assert all(torch.isfinite(s.latents).all() for s in traj)


@pytest.mark.parametrize("fixture", ["pixart_pipe", "pixart_alpha_pipe"])
def test_branch_replays_the_multistep_sampler(fixture, request):
    pipe = request.getfixturevalue(fixture)
    traj = nbd.trace(pipe, PROMPT, steps=5, guidance=4.0, seed=1)
    same = nbd.branch(pipe, traj, at=2)
    assert torch.equal(same.final_latents, traj.final_latents)
    prompt = nbd.branch(pipe, traj, at=1, prompt="small blue square")
    assert not torch.allclose(prompt.final_latents, traj.final_latents)
    euler = nbd.branch(pipe, traj, at=1, scheduler="euler", steps=8)
    assert euler.params["scheduler"] == "euler" and torch.isfinite(euler.final_latents).all()


def test_previews_have_the_image_size(pixart_pipe):
    traj = nbd.trace(pixart_pipe, PROMPT, steps=2, guidance=4.5, seed=0, height=16, width=24)
    assert approx_decoder_for(pixart_pipe.vae).weight.shape == (4, 3)
    for view in ("x0", "xt"):
        for decoder in ("approx", "full"):
            assert traj.image(0, view=view, decoder=decoder).size == (24, 16)
    assert traj.guided_image(0, 7.0).size == (24, 16)


def test_defaults(pixart_pipe, pixart_alpha_pipe):
    sigma, alpha = family_for(pixart_pipe), family_for(pixart_alpha_pipe)
    assert sigma.default_size() == (16, 16) and sigma.vae_factor == 2 and sigma.latent_channels == 4
    assert (sigma.max_sequence_length, alpha.max_sequence_length) == (300, 120)
    assert alpha.name == "pixart-alpha" and sigma.default_guidance == 4.5


def test_saved_folder_loads_and_traces_the_same(pixart_pipe, tmp_path):
    pixart_pipe.save_pretrained(tmp_path / "tiny-pixart", safe_serialization=True)
    pipe = nbd.load_pipeline(tmp_path / "tiny-pixart", device="cpu")
    assert type(pipe).__name__ == "PixArtSigmaPipeline"
    a = nbd.trace(pipe, PROMPT, steps=3, guidance=4.5, seed=1)
    b = nbd.trace(pixart_pipe, PROMPT, steps=3, guidance=4.5, seed=1)
    torch.testing.assert_close(a.final_latents, b.final_latents, rtol=1e-5, atol=1e-5)


def test_alpha_1024_resolution_conditioning_matches():
    """PixArt-alpha at sample_size 128 also conditions on resolution and aspect ratio."""
    from nbdiffuse.testing import tiny_pixart_pipeline

    pipe = tiny_pixart_pipeline(seed=2, sigma=False, sample_size=128)
    assert pipe.transformer.use_additional_conditions
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=4.5, seed=3, height=16, width=24)
    assert torch.equal(traj.final_latents, pipe_latents(pipe, 3, 4.5, seed=3, height=16, width=24))
