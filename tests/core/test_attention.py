"""Cross-attention maps per step: recorded beside the run, which stays bit for bit the same."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.attention import AttentionRecorder, cross_attention_layers, prompt_words
from nbdiffuse.core.joint_attention import joint_attention_layers


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


@pytest.mark.parametrize("fixture", ["sd_pipe", "sdxl_pipe", "pixart_pipe", "sd3_pipe", "flux_pipe",
                                     "flux_schnell_pipe"])
def test_recording_leaves_the_run_bit_for_bit_the_same(fixture, request):
    pipe = request.getfixturevalue(fixture)
    run = dict(steps=3, guidance=4.0, seed=7, negative_prompt="blue")  # Flux-schnell: true CFG
    traj, maps, grid = record(pipe, "a red circle", [1, 2, 3], **run)
    bare = nbd.trace(pipe, "a red circle", **run)
    for a, b in zip(traj, bare):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.pred_x0, b.pred_x0)
        assert torch.equal(a.eps_cond, b.eps_cond)
        assert (a.eps_uncond is None and b.eps_uncond is None) or torch.equal(a.eps_uncond, b.eps_uncond)
    assert len(maps) == 3 and all(m.shape == (3, *grid) and m.dtype == torch.float16 for m in maps)
    assert all(torch.isfinite(m.float()).all() and (m >= 0).all() for m in maps)
    layers = cross_attention_layers(denoiser(pipe)) or joint_attention_layers(denoiser(pipe))
    assert layers and not any(layer._forward_hooks or layer.to_q._forward_hooks for _, layer in layers)


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


def test_a_module_without_cross_or_joint_attention_is_refused(sd_pipe):
    with pytest.raises(ValueError, match="attention maps need cross-attention or joint attention layers"):
        AttentionRecorder(sd_pipe.vae, [1], (4, 4))


def test_trace_records_maps_per_step_and_word_and_the_run_is_unchanged(sd_pipe, tmp_path):
    run = dict(steps=3, guidance=4.0, seed=2)
    traj = nbd.trace(sd_pipe, "a red circle", attention=True, **run)
    bare = nbd.trace(sd_pipe, "a red circle", **run)
    assert all(torch.equal(a.latents, b.latents) and torch.equal(a.pred_x0, b.pred_x0) for a, b in zip(traj, bare))
    assert traj.tokens == ["a", "red", "circle"] and bare[0].attention is None
    grid = tuple(traj[0].latents.shape[-2:])
    red = traj.attention(1, "red")
    assert red.shape == grid and red.dtype == torch.float32 and (red > 0).all()
    assert torch.equal(traj.attention(1, 1), red) and torch.equal(traj.attention(1, "RED"), red)
    total = sum(traj.attention(2, w) for w in range(len(traj.tokens)))
    assert (total < 1.0 + 1e-3).all()  # the prompt's words hold part of each position's attention (start, end, padding the rest)
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    loaded = nbd.Trajectory.load(path)
    assert loaded.tokens == traj.tokens and torch.equal(loaded.attention(1, "red"), red)


@pytest.mark.parametrize("word, kind, words", [("blue", ValueError, "not a word of this run's prompt"),
                                               (7, ValueError, "out of range"), (1.5, TypeError, "word must be")])
def test_a_word_the_prompt_lacks_is_refused(sd_pipe, word, kind, words):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=4.0, seed=0, attention=True)
    with pytest.raises(kind, match=words):
        traj.attention(0, word)


def test_maps_are_asked_for_or_refused_by_name(sd_pipe, generic_pipe):
    with pytest.raises(ValueError, match="trace it with attention=True"):
        nbd.trace(sd_pipe, "a red circle", steps=1, seed=0).attention(0, "red")
    with pytest.raises(ValueError, match="attention must be True, False or one of 'decoder', 'all'.*'yes'"):
        nbd.trace(sd_pipe, "a red circle", steps=1, attention="yes")
    with pytest.raises(TypeError, match="attention must be True, False or one of"):
        nbd.trace(sd_pipe, "a red circle", steps=1, attention=1)
    with pytest.raises(ValueError, match="attention=True needs a known model family"):
        nbd.trace(generic_pipe, "a red circle", steps=1, attention=True)


def test_a_file_whose_maps_do_not_fit_is_refused(sd_pipe, tmp_path):
    from safetensors.torch import load_file, save_file

    from nbdiffuse.core.nbd_schema import TrajectoryFileError

    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=4.0, seed=0, attention=True)
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as opened:
        header = opened.metadata()
    tensors = load_file(str(path))
    tensors["steps.0.attention"] = torch.zeros(2, 3, 3, dtype=torch.float16)
    save_file(tensors, str(tmp_path / "bad.nbd"), metadata=header)
    with pytest.raises(TrajectoryFileError, match="steps.0.attention"):
        nbd.Trajectory.load(tmp_path / "bad.nbd")


def test_a_branch_keeps_the_parents_maps_and_says_its_own_steps_have_none(sd_pipe):
    parent = nbd.trace(sd_pipe, "a red circle", steps=4, guidance=4.0, seed=0, attention=True)
    child = nbd.branch(sd_pipe, parent, at=1, guidance=6.0)
    assert torch.equal(child.attention(1, "red"), parent.attention(1, "red"))
    with pytest.raises(ValueError, match="has no attention maps"):
        child.attention(3, "red")


def test_a_unets_maps_average_its_decoder_unless_asked_for_all_layers(sd_pipe):
    every = cross_attention_layers(sd_pipe.unet, "all")
    decoder = cross_attention_layers(sd_pipe.unet, "decoder")
    assert decoder and all(name.startswith("up_blocks.") for name, _ in decoder) and len(decoder) < len(every)
    run = dict(steps=2, guidance=4.0, seed=3)
    default = nbd.trace(sd_pipe, "a red circle", attention=True, **run)
    everything = nbd.trace(sd_pipe, "a red circle", attention="all", **run)
    assert default.params["attention"]["layers"] == "decoder" and everything.params["attention"]["layers"] == "all"
    assert not torch.equal(default.attention(1, "red"), everything.attention(1, "red"))
    assert torch.equal(nbd.trace(sd_pipe, "a red circle", attention="decoder", **run).attention(1, "red"),
                       default.attention(1, "red"))
    with pytest.raises(ValueError, match="layers must be one of 'decoder', 'all', got 'middle'"):
        cross_attention_layers(sd_pipe.unet, "middle")


def test_a_file_with_an_unknown_layer_choice_is_refused(sd_pipe, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from nbdiffuse.core.nbd_schema import TrajectoryFileError

    path = tmp_path / "run.nbd"
    nbd.trace(sd_pipe, "a red circle", steps=1, seed=0, attention=True).save(path, frames=False)
    with safe_open(str(path), "pt") as opened:
        header = opened.metadata()
    meta = json.loads(header["meta"])
    meta["params"]["attention"]["layers"] = "middle"
    save_file(load_file(str(path)), str(tmp_path / "bad.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match="params.attention.layers"):
        nbd.Trajectory.load(tmp_path / "bad.nbd")


@pytest.mark.parametrize("make", ["tiny_sd_pipeline", "tiny_sdxl_pipeline", "tiny_pixart_pipeline",
                                  "tiny_sd3_pipeline", "tiny_flux_pipeline"])
def test_fused_projections_give_the_same_maps(make):
    # fuse_qkv_projections() computes k (and q) with to_kv / to_qkv / to_added_qkv instead of to_q and to_k
    from nbdiffuse import testing

    pipe = getattr(testing, make)()
    run = dict(steps=2, guidance=3.0, seed=1, attention=True)
    plain = nbd.trace(pipe, "a red circle", **run)
    denoiser(pipe).fuse_qkv_projections()
    assert any(getattr(m, "fused_projections", False) for m in denoiser(pipe).modules())
    fused = nbd.trace(pipe, "a red circle", **run)
    for k in range(2):
        assert plain.attention(k, "red").abs().max() > 0
        assert torch.allclose(fused.attention(k, "red").float(), plain.attention(k, "red").float(), atol=1e-3)


class _OwnProjections:
    """An attention processor that computes q, k and v from the weights, not by calling the projection layers."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        import torch.nn.functional as F

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = F.linear(hidden_states, attn.to_q.weight, attn.to_q.bias)
        k = F.linear(context, attn.to_k.weight, attn.to_k.bias)
        v = F.linear(context, attn.to_v.weight, attn.to_v.bias)
        q, k, v = (x.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return attn.to_out[1](attn.to_out[0](out))


def test_a_layer_whose_projections_are_not_seen_is_named_not_read_as_zeros():
    from nbdiffuse import testing

    pipe = testing.tiny_sd_pipeline()
    name, layer = cross_attention_layers(pipe.unet, "decoder")[0]
    layer.set_processor(_OwnProjections())
    with pytest.raises(RuntimeError, match=rf"layer '{name}' \(Attention, processor _OwnProjections\).*attention=False"):
        nbd.trace(pipe, "a red circle", steps=2, seed=0, attention=True)
    traj = nbd.trace(pipe, "a red circle", steps=2, seed=0)  # the same pipeline runs on without maps
    assert len(traj) == 2 and not any(h for _, m in cross_attention_layers(pipe.unet) for h in m._forward_hooks)
