"""Cross-attention maps per step: recorded beside the run, which stays bit for bit the same."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.attention import AttentionRecorder, cross_attention_layers, prompt_words


def denoiser(pipe):
    return getattr(pipe, "unet", None) or pipe.transformer


def latent_grid(pipe, traj):
    return tuple(traj[0].latents.shape[-2:])


def record(pipe, prompt, tokens, **run):
    maps = []
    grid = latent_grid(pipe, nbd.trace(pipe, prompt, **dict(run, steps=1)))
    with AttentionRecorder(denoiser(pipe), tokens, grid) as recorder:
        traj = nbd.trace(pipe, prompt, on_step=lambda t, s: maps.append(recorder.step_done()), **run)
    return traj, maps, grid


@pytest.mark.parametrize("fixture", ["sd_pipe", "sdxl_pipe", "pixart_pipe"])
def test_recording_leaves_the_run_bit_for_bit_the_same(fixture, request):
    pipe = request.getfixturevalue(fixture)
    run = dict(steps=3, guidance=4.0, seed=7)
    traj, maps, grid = record(pipe, "a red circle", [1, 2, 3], **run)
    bare = nbd.trace(pipe, "a red circle", **run)
    for a, b in zip(traj, bare):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.pred_x0, b.pred_x0)
        assert torch.equal(a.eps_cond, b.eps_cond) and torch.equal(a.eps_uncond, b.eps_uncond)
    assert len(maps) == 3 and all(m.shape == (3, *grid) and m.dtype == torch.float16 for m in maps)
    assert all(torch.isfinite(m.float()).all() and (m >= 0).all() for m in maps)
    assert not any(layer._forward_hooks or layer.to_q._forward_hooks for _, layer in cross_attention_layers(denoiser(pipe)))


def test_maps_are_the_models_attention_probabilities(sd_pipe):
    # every position's attention over the whole text sequence sums to 1, layer by layer, so the mean does too
    length = sd_pipe.tokenizer.model_max_length
    _, maps, _ = record(sd_pipe, "a red circle", list(range(length)), steps=2, guidance=3.0, seed=0)
    for m in maps:
        assert torch.allclose(m.float().sum(0), torch.ones(m.shape[1:]), atol=2e-3)


def test_pixart_reads_only_the_prompts_tokens(pixart_pipe):
    # T5 pads its 300-ish positions; the text mask must keep padding out of the softmax
    words, positions = prompt_words(pixart_pipe.tokenizer, "a red circle")
    every = [p for ps in positions for p in ps]
    _, maps, _ = record(pixart_pipe, "a red circle", every + [max(every) + 1], steps=2, guidance=3.0, seed=0)
    for m in maps:
        total = m.float()[:len(every) + 1].sum(0)  # the prompt's tokens and the end token hold all attention
        assert torch.allclose(total, torch.ones_like(total), atol=2e-3)


def test_words_map_back_from_tokens(sd_pipe):
    words, positions = prompt_words(sd_pipe.tokenizer, "a red circle, left")
    assert words[:3] == ["a", "red", "circle"] and "," in words and words[-1] == "left"
    assert positions[0] == [1] and all(len(p) >= 1 for p in positions)


def test_a_denoiser_without_cross_attention_is_refused(sd3_pipe):
    with pytest.raises(ValueError, match="attention maps need cross-attention layers"):
        AttentionRecorder(sd3_pipe.transformer, [1], (4, 4))
