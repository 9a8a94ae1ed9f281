"""The shipped shapes model: loads offline, is a real SD pipeline, speaks the grammar, draws shapes."""
import json
from pathlib import Path

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.loading import EMBEDDED_MODEL
from nbdiffuse.shapes.grammar import VOCABULARY, longest_caption


@pytest.fixture(scope="module")
def pipe():
    return nbd.load_pipeline()


def test_loads_offline_as_a_stable_diffusion_pipeline(pipe, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.device.type == "cpu"
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    assert pipe._nbd_shapes and pipe.vae._nbd_approx.kernel == 3
    assert pipe.vae._nbd_approx.hidden_weight.shape == (36, 64)  # one hidden layer: shapes.approx
    assert pipe.vae._nbd_approx.global_weight.shape == (8, 64)  # which sees the whole latent's mean and spread
    files = [p for p in EMBEDDED_MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert json.loads((EMBEDDED_MODEL / "training.json").read_text())["complete"]


def test_shipped_tokenizer_reads_every_word_as_one_token(pipe):
    tokenizer = pipe.tokenizer
    assert (Path(EMBEDDED_MODEL) / "tokenizer" / "vocab.json").is_file()
    assert (Path(EMBEDDED_MODEL) / "tokenizer" / "merges.txt").is_file()
    for word in {w for values in VOCABULARY.values() for phrase in values for w in phrase.split()}:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    assert len(tokenizer(longest_caption()).input_ids) <= tokenizer.model_max_length


def test_draws_recognisable_scenes_on_fixed_captions(pipe):
    """A loose bar on 16 fixed captions (the full bars are in benchmarks/shapes_model.py)."""
    captions = [nbd.shapes.random_caption(seed=2_000_000 + i).text() for i in range(16)]
    images = [nbd.trace(pipe, c, steps=20, guidance=5.0, seed=i).image(-1, decoder="full")
              for i, c in enumerate(captions)]
    scores = nbd.shapes.adherence(images, captions)
    assert scores["size"] >= 0.6 and scores["shape"] >= 0.3, scores
    assert images[0].size == (64, 64)


def test_shipped_approx_decoder_matches_the_vae_on_its_world(pipe):
    """The shipped fit reads the colours of encoded renders far better than a flat mean colour."""
    import numpy as np

    from nbdiffuse.core.decode import to_pipeline_space

    renders = np.stack([np.asarray(nbd.shapes.render(nbd.shapes.random_caption(seed=3_000_000 + i), seed=i))
                        for i in range(16)])
    pixels = torch.from_numpy(renders).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        latents = to_pipeline_space(pipe.vae, pipe.vae.encode(pixels * 2 - 1).latent_dist.mean)
    truth = torch.nn.functional.avg_pool2d(pixels, 4).permute(0, 2, 3, 1).numpy() * 255
    approx = np.stack([pipe.vae._nbd_approx.rgb(z) for z in latents]).astype(np.float32)
    error = np.abs(approx - truth).mean()
    baseline = np.abs(truth.mean((0, 1, 2)) - truth).mean()
    assert error < 0.5 * baseline, (error, baseline)


def test_vae_runs_channels_last_with_the_same_picture(pipe):
    """The shapes VAE is laid out channels_last (faster small convolutions on a CPU); the picture is
    what the default layout gives."""
    import copy

    conv = pipe.vae.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    plain = copy.deepcopy(pipe.vae).to(memory_format=torch.contiguous_format)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast, slow = pipe.vae.decode(latents).sample, plain.decode(latents).sample
    assert torch.allclose(fast, slow, atol=1e-4)
