import numpy as np
import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.decode import ApproxDecoder, approx_decoder_for, full_decode, to_pipeline_space


def _encode(vae, pixels):
    with torch.no_grad():
        return to_pipeline_space(vae, vae.encode(pixels * 2 - 1).latent_dist.mean)


class LinearVAE(torch.nn.Module):
    """An encoder whose latents are a known affine map of the 4x4-pooled colour: the fit must find its inverse."""

    class config:
        block_out_channels = (8, 8, 8)  # 4x downsampling
        scaling_factor = 0.5
        shift_factor = 0.1

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.mix = torch.nn.Parameter(torch.randn(4, 3, generator=generator))
        self.offset = torch.nn.Parameter(torch.randn(4, generator=generator))

    def encode(self, pixels):
        rgb = torch.nn.functional.avg_pool2d((pixels + 1) / 2, 4)
        mean = torch.einsum("dc,bchw->bdhw", self.mix, rgb) + self.offset[:, None, None]
        return type("Out", (), {"latent_dist": type("Dist", (), {"mean": mean})})


def test_approx_fit_inverts_a_known_linear_vae():
    vae = LinearVAE()
    decoder = ApproxDecoder.fit(vae)
    rng = np.random.default_rng(1)
    rgb = torch.from_numpy(rng.random((1, 3, 8, 8), dtype=np.float32))
    pixels = rgb.repeat_interleave(4, 2).repeat_interleave(4, 3)
    latents = _encode(vae, pixels)[0].detach()
    expected = (rgb[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(decoder.rgb(latents).astype(int) - expected.astype(int)).max() <= 1


def test_approx_fit_on_a_real_vae_is_finite(sd_pipe):
    decoder = ApproxDecoder.fit(sd_pipe.vae)
    assert decoder.weight.shape == (4, 3) and decoder.bias.shape == (3,)
    assert np.isfinite(decoder.weight).all() and np.isfinite(decoder.bias).all()


def test_approx_decoder_is_cached_per_vae_and_round_trips(sd_pipe):
    a = approx_decoder_for(sd_pipe.vae)
    assert approx_decoder_for(sd_pipe.vae) is a
    b = ApproxDecoder.from_dict(a.to_dict())
    z = torch.randn(4, 8, 8)
    assert np.array_equal(a.rgb(z), b.rgb(z))
    image = a(z)
    assert isinstance(image, Image.Image) and image.size == (8, 8) and image.mode == "RGB"


def test_full_decode_matches_the_pipeline(sd_pipe):
    traj = nbd.trace(sd_pipe, "star", steps=3, seed=0)
    ours = np.asarray(traj.image(-1, decoder="full"), np.float32)
    theirs = sd_pipe("star", num_inference_steps=3, guidance_scale=7.5,
                     generator=torch.Generator("cpu").manual_seed(0), output_type="np").images[0] * 255
    assert np.abs(ours - theirs).max() <= 1.0


def test_tiny_decoder(sd_pipe):
    from diffusers import AutoencoderTiny

    import pytest
    traj = nbd.trace(sd_pipe, "star", steps=2, seed=0)
    with pytest.raises(ValueError, match="tiny autoencoder"):
        traj.image(-1, decoder="tiny")
    torch.manual_seed(0)
    tiny = AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4,
                           upsampling_scaling_factor=2)
    nbd.set_tiny_decoder(sd_pipe, tiny)
    try:
        assert traj.image(-1, decoder="tiny", size="latent").size == (16, 16)
    finally:
        del sd_pipe._nbd_tiny_vae
    with pytest.raises(TypeError, match="AutoencoderTiny"):
        nbd.set_tiny_decoder(sd_pipe, sd_pipe.vae)
    assert full_decode(sd_pipe.vae, traj.final_latents).size == (16, 16)


def test_three_by_three_fit_and_decoder_side_fit():
    vae = LinearVAE()
    decoder = ApproxDecoder.fit(vae, kernel=3)
    assert decoder.kernel == 3 and decoder.weight.shape == (36, 3)
    rgb = torch.from_numpy(np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32))
    latents = _encode(vae, rgb.repeat_interleave(4, 2).repeat_interleave(4, 3))[0].detach()
    expected = (rgb[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(int)
    assert np.abs(decoder.rgb(latents).astype(int) - expected).max() <= 2
    assert ApproxDecoder.from_dict(decoder.to_dict()).kernel == 3
    with pytest.raises(ValueError, match="kernel must be 1 or 3"):
        ApproxDecoder.fit(vae, kernel=2)


def test_fit_to_decoder_reads_what_the_vae_shows(sd_pipe):
    latents = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    decoder = ApproxDecoder.fit_to_decoder(sd_pipe.vae, latents)
    assert decoder.weight.shape == (4, 3) and np.isfinite(decoder.weight).all()


class CurvedVAE(torch.nn.Module):
    """A decoder whose colour is a saturating (non-linear) function of each latent pixel, 4x upsampled."""

    class config:
        block_out_channels = (8, 8, 8)
        scaling_factor = 1.0
        shift_factor = None

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))

    def decode(self, z, return_dict=False):
        rgb = torch.tanh(2.0 * torch.einsum("cd,bdhw->bchw", self.mix, z))  # in [-1, 1], as a VAE gives
        return (rgb.repeat_interleave(4, 2).repeat_interleave(4, 3),)


def test_hidden_layer_fit_follows_a_non_linear_decoder():
    vae = CurvedVAE()
    train = torch.randn(48, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    held_out = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    linear = ApproxDecoder.fit_to_decoder(vae, train)
    curved = ApproxDecoder.fit_hidden(vae, train, kernel=1, hidden=16, steps=600)
    with torch.no_grad():
        truth = ((vae.decode(held_out)[0][:, :, ::4, ::4] + 1) / 2 * 255).permute(0, 2, 3, 1).numpy()

    def error(decoder):
        return np.mean([np.abs(decoder.rgb(z).astype(float) - t).mean() for z, t in zip(held_out, truth)])

    assert error(curved) < 0.5 * error(linear), (error(curved), error(linear))
    again = ApproxDecoder.from_dict(decoder_dict := curved.to_dict())
    assert decoder_dict["hidden_weight"] and np.array_equal(again.rgb(held_out[0]), curved.rgb(held_out[0]))
    assert np.array_equal(curved.rgb(held_out[0].numpy()), curved.rgb(held_out[0]))  # numpy and torch paths agree
    with pytest.raises(ValueError, match="hidden_weight"):
        ApproxDecoder.from_dict({**decoder_dict, "hidden_bias": [0.0]})


class ContextVAE(CurvedVAE):
    """A decoder whose colour also follows the whole latent's mean, as attention lets a real VAE's
    decoder read the whole picture: the same latent pixel decodes differently on different pictures."""

    def decode(self, z, return_dict=False):
        local = torch.einsum("cd,bdhw->bchw", self.mix, z)
        rgb = torch.tanh(local + 3.0 * z.mean((1, 2, 3))[:, None, None, None])
        return (rgb.repeat_interleave(4, 2).repeat_interleave(4, 3),)


def test_global_context_follows_a_decoder_that_reads_the_whole_picture():
    vae = ContextVAE()
    gen = torch.Generator().manual_seed(4)
    def pictures(n):  # latents whose overall level varies from picture to picture
        return torch.randn(n, 4, 8, 8, generator=gen) * 0.5 + torch.randn(n, 1, 1, 1, generator=gen)
    train, held_out = pictures(64), pictures(8)
    local = ApproxDecoder.fit_hidden(vae, train, kernel=1, hidden=16, steps=600)
    context = ApproxDecoder.fit_hidden(vae, train, kernel=1, hidden=16, steps=600, global_context=True)
    with torch.no_grad():
        truth = ((vae.decode(held_out)[0][:, :, ::4, ::4] + 1) / 2 * 255).permute(0, 2, 3, 1).numpy()

    def error(decoder):
        return np.mean([np.abs(decoder.rgb(z).astype(float) - t).mean() for z, t in zip(held_out, truth)])

    assert local.global_weight is None and context.global_weight.shape == (8, 16)
    assert error(context) < 0.6 * error(local), (error(context), error(local))
    again = ApproxDecoder.from_dict(decoder_dict := context.to_dict())
    assert np.array_equal(again.rgb_many(list(held_out))[3], context.rgb(held_out[3]))  # batched = one by one
    numpy_path = context.rgb(held_out[0].numpy()).astype(int)
    assert np.abs(numpy_path - context.rgb(held_out[0]).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="global_weight"):
        ApproxDecoder.from_dict({**decoder_dict, "global_weight": [[0.0] * 16] * 4})
    with pytest.raises(ValueError, match="global_weight"):
        ApproxDecoder.from_dict({**local.to_dict(), "hidden_weight": None, "hidden_bias": None,
                                 "weight": [[0.0] * 3] * 4, "global_weight": [[0.0] * 16] * 8})


def test_full_decode_many_batches_and_agrees_with_full_decode(sd_pipe):
    from nbdiffuse.core.decode import full_decode_many

    traj = nbd.trace(sd_pipe, "a red circle", steps=5, seed=2)
    latents = [traj.latents_for(k, view) for k in range(5) for view in ("x0", "xt")]
    calls = []
    hook = sd_pipe.vae.decoder.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    try:
        many = list(full_decode_many(sd_pipe.vae, latents))
    finally:
        hook.remove()
    assert calls == [8, 2]  # up to DECODE_BATCH_MAX a call: the VAE's config tells the output size
    for picture, z in zip(many, latents):
        single = np.asarray(full_decode(sd_pipe.vae, z), np.int16)
        assert np.abs(np.asarray(picture, np.int16) - single).max() <= 1
    with pytest.raises(ValueError, match="latents must share one shape"):
        list(full_decode_many(sd_pipe.vae, [latents[0], latents[0][:, :4]]))
    assert list(full_decode_many(sd_pipe.vae, [])) == []
