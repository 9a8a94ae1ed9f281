"""SD3's and Flux's maps: the text columns of the picture rows of their joint attention, as the kernel got them."""
import pytest
import torch
import torch.nn.functional as F

import nbdiffuse as nbd
from nbdiffuse.core.attention import prompt_words
from nbdiffuse.core.joint_attention import joint_attention_layers

SIZE = dict(height=32, width=32)


def kernel_probs(monkeypatch, pipe, prompt, **run):
    """For each call of the transformer in a run, its attention kernel's calls: softmax(q k^T / sqrt(d))
    written out, heads averaged, (batch, queries, keys)."""
    calls = []
    fused = F.scaled_dot_product_attention

    def spy(query, key, value, *args, **kwargs):
        if calls and calls[-1] is not None:
            scores = query.float() @ key.float().transpose(-1, -2) * query.shape[-1] ** -0.5
            calls[-1].append(scores.softmax(-1).mean(1))
        return fused(query, key, value, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    handles = [pipe.transformer.register_forward_pre_hook(lambda *_: calls.append([])),
               pipe.transformer.register_forward_hook(lambda *_: calls.append(None))]
    try:
        traj = nbd.trace(pipe, prompt, **run)
    finally:
        monkeypatch.undo()
        for handle in handles:
            handle.remove()
    return traj, [call for call in calls if call is not None]


@pytest.mark.parametrize("fixture", ["sd3_pipe", "flux_pipe"])
def test_joint_maps_are_the_kernels_text_columns(fixture, request, monkeypatch):
    pipe = request.getfixturevalue(fixture)
    run = dict(steps=2, guidance=3.0, seed=1, **SIZE)
    _, seen = kernel_probs(monkeypatch, pipe, "a red circle", **run)
    traj = nbd.trace(pipe, "a red circle", attention=True, **run)
    flux = fixture == "flux_pipe"
    tokenizer = pipe.tokenizer_2 if flux else pipe.tokenizer
    words, positions = prompt_words(tokenizer, "a red circle")
    assert traj.tokens == words and words[-2:] == ["red", "circle"]
    layers = len(joint_attention_layers(pipe.transformer))
    assert layers == (2 if flux else 1)  # Flux: one dual-stream and one single-stream block
    grid = tuple(traj[0].latents.shape[-2:])
    assert len(seen) == 2  # one transformer call a step (guidance distilled into Flux-dev; SD3 batches CFG)
    for k in range(2):
        expected = 0
        assert len(seen[k]) == layers
        for probs in seen[k]:
            cond = probs[-1]  # (queries, keys) of the conditional row
            if flux:  # text first: the picture rows come after the text's (2 x 2 latent patches)
                n_text = cond.shape[-1] - (grid[0] // 2) * (grid[1] // 2)
                columns = cond[n_text:, :n_text]
            else:  # picture first, the text after it
                n_picture = grid[0] * grid[1]
                columns = cond[:n_picture, n_picture:]
            red = columns[:, positions[words.index("red")]].sum(-1)
            side = int(red.numel() ** 0.5)
            red = red.reshape(1, 1, side, side)
            if side != grid[0]:
                red = F.interpolate(red, size=grid, mode="bilinear", align_corners=False)
            expected = expected + red[0, 0]
        expected = expected / layers
        assert torch.allclose(traj.attention(k, "red"), expected, atol=2e-3), (k, fixture)


def test_flux_reads_the_conditional_call_only(flux_schnell_pipe):
    # true CFG: Flux calls its transformer with the prompt, then with the negative prompt
    run = dict(steps=2, seed=0, **SIZE)
    guided = nbd.trace(flux_schnell_pipe, "a red circle", guidance=4.0, negative_prompt="blue", attention=True, **run)
    plain = nbd.trace(flux_schnell_pipe, "a red circle", guidance=1.0, attention=True, **run)
    # the first step sees the same latents either way: its maps are the prompt's alone
    assert torch.equal(guided.attention(0, "red"), plain.attention(0, "red"))


def test_joint_maps_hold_part_of_the_attention(sd3_pipe):
    traj = nbd.trace(sd3_pipe, "a red circle", steps=2, guidance=3.0, seed=0, attention=True, **SIZE)
    total = sum(traj.attention(1, w) for w in range(len(traj.tokens)))
    assert (total > 0).all() and (total < 1).all()  # the picture's own columns and the padding hold the rest


def test_sd3_with_t5_reads_each_words_clip_and_t5_columns(monkeypatch):
    from nbdiffuse.testing import tiny_sd3_pipeline

    pipe = tiny_sd3_pipeline(t5=True)
    prompt, run = "a red circle, on blue", dict(steps=2, guidance=3.0, seed=1, **SIZE)
    _, seen = kernel_probs(monkeypatch, pipe, prompt, **run)
    traj = nbd.trace(pipe, prompt, attention=True, **run)
    clip_words, clip_positions = prompt_words(pipe.tokenizer, prompt)
    t5_words, t5_positions = prompt_words(pipe.tokenizer_3, prompt)
    assert traj.tokens == clip_words and "circle," in t5_words  # the words are CLIP's
    # T5's "circle," is CLIP's "circle" and ",": its last token, the comma, goes to the comma
    circle = t5_positions[t5_words.index("circle,")]
    t5_columns = {"red": t5_positions[t5_words.index("red")], "circle": circle[:-1], ",": circle[-1:]}
    grid = tuple(traj[0].latents.shape[-2:])
    n_picture = grid[0] * grid[1]  # patch size 1: a picture token per latent position
    for word in ("red", "circle", ","):
        columns = clip_positions[clip_words.index(word)] + [77 + p for p in t5_columns[word]]
        for k in range(2):
            (probs,) = seen[k]  # one joint block
            expected = probs[-1][:n_picture, n_picture:][:, columns].sum(-1).reshape(grid)
            assert torch.allclose(traj.attention(k, word), expected, atol=2e-3), (word, k)
            t5_part = probs[-1][:n_picture, n_picture:][:, columns[len(clip_positions[clip_words.index(word)]):]]
            assert t5_part.sum() > 0  # the T5 columns hold part of it


def test_words_of_two_tokenizers_are_matched_by_their_characters():
    from nbdiffuse.core.attention import align_words

    assert align_words(["a", "red", "circle", ",", "don", "'", "t"], ["a", "red", "circle,", "don't", "!"]) == [
        0, 1, 2, 4, None]
    assert align_words(["red", "circle"], ["red", "square", "circle"]) == [0, None, 1]  # where the texts part
    # token by token: punctuation finds its own word, a word's tokens find it, case and spaces aside
    assert align_words(["a", "big", "circle", ",", "(", "blue", ")", "3", ".", "5"],
                       ["A", "b", "ig", "circle", ",", "(", "blue", ")", "3", ".", "5"]) == [
        0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    # an unknown token where the texts part costs that token only
    assert align_words(["red", "\u2606", "star", "!"], ["red", "<unk>", "star", "!"]) == [0, None, 2, 3]
