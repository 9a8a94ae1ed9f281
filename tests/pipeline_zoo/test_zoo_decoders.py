"""Decoders that are not an AutoencoderKL (#21 E1, E2): Sana's DC-AE, Kandinsky 3's `movq`, Stable
Cascade's `vqgan`. Each draws what the pipeline itself draws, and an approx decoder is fitted to it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.decode import approx_decoder_for, full_decode, upscale
from nbdiffuse.core.pipe_decoder import OwnDecoder, decoder_of, encode_picture, has_decoder

import builders
from cases import CASES
from test_zoo_runs import built


def case_of(name):
    return next(case for case in CASES if case.cls == name)


def own_picture(pipe, traj) -> np.ndarray:
    """The pipeline's own picture of the run's seed and settings (output_type="np"), as uint8."""
    p = traj.params
    out = pipe(prompt=p["prompt"], num_inference_steps=len(traj), height=p["height"], width=p["width"],
               guidance_scale=p["guidance"][0], generator=torch.Generator("cpu").manual_seed(p["seed"]),
               output_type="np").images[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.int16)


def test_kandinsky3_decodes_with_its_movq_as_the_pipeline_does():
    pipe, traj = built(case_of("Kandinsky3Pipeline"))
    decoder = decoder_of(pipe)
    assert isinstance(decoder, OwnDecoder) and decoder.module is pipe.movq and decoder_of(pipe) is decoder
    assert upscale(decoder) == 8
    ours = np.asarray(traj.image(-1, "xt", decoder="full", size="latent"), np.int16)
    assert np.abs(ours - own_picture(pipe, traj)).max() <= 1  # rounding apart
    approx = traj.image(-1, "xt", decoder="approx", size="latent")
    assert approx.size == traj.final_latents.shape[-1:-3:-1]  # latent resolution


def test_sana_decodes_with_its_dc_ae_and_fits_an_approx_decoder_through_its_encoder():
    pipe, traj = built(case_of("SanaPipeline"))
    assert decoder_of(pipe) is pipe.vae and upscale(pipe.vae) == pipe.vae.spatial_compression_ratio == 8
    latents = traj.final_latents
    picture = full_decode(pipe.vae, latents)
    assert picture.size == (latents.shape[-1] * 8, latents.shape[-2] * 8)
    rgb = approx_decoder_for(pipe.vae).rgb(latents)
    assert rgb.shape == (latents.shape[-2], latents.shape[-1], 3)


def test_stable_cascade_vqgan_decodes_the_pipelines_way():
    vqgan = builders.paella_vqgan()
    decoder = OwnDecoder(vqgan, "vqgan")
    z = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # StableCascadeDecoderPipeline: vqgan.decode(scale_factor * latents).sample.clamp(0, 1)
        own = vqgan.decode(vqgan.config.scale_factor * z).sample.clamp(0, 1)[0]
    ours = np.asarray(full_decode(decoder, z[0]), np.int16)
    assert ours.shape == (24, 24, 3) and upscale(decoder) == 4
    assert np.abs(ours - (own.permute(1, 2, 0).numpy() * 255).round()).max() <= 1
    assert approx_decoder_for(decoder).rgb(z[0]).shape == (6, 6, 3)


def _pixels(side):
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_pictures_encode_into_each_pipelines_own_latent_space():
    kandinsky, _ = built(case_of("Kandinsky3Pipeline"))
    x = _pixels(32)
    with torch.no_grad():  # Kandinsky3Img2ImgPipeline: self.movq.encode(image)["latents"]
        own = kandinsky.movq.encode(x)["latents"]
    assert torch.equal(encode_picture(kandinsky, x), own)
    sana, _ = built(case_of("SanaPipeline"))
    with torch.no_grad():  # a DC-AE's latent, scaled as the pipeline's latents are
        own = sana.vae.encode(x).latent * sana.vae.config.scaling_factor
    assert torch.allclose(encode_picture(sana, x), own)
    # the vqgan's way back: decoding what it encoded is the vqgan's own round trip of the [0, 1] picture
    vqgan = builders.paella_vqgan()
    cascade = type("CascadeDecoderParts", (), {"vqgan": vqgan})()
    z = encode_picture(cascade, _pixels(24))
    with torch.no_grad():
        own = vqgan.encode((_pixels(24) + 1) / 2).latents
    assert z.shape == own.shape and torch.allclose(z * vqgan.config.scale_factor, own)


def test_teaching_widgets_show_kandinsky3s_latent_space_through_its_movq():
    from nbdiffuse.widgets.teaching import ForwardExplorer, LatentView

    pipe, _ = built(case_of("Kandinsky3Pipeline"))
    view = LatentView(pipe=pipe)
    assert view.latent_shape[0] == 4 and view.full and view.approx
    forward = ForwardExplorer(pipe=pipe, positions=3)
    assert len(forward.frames_latent) == 3 and forward.latent_shape == view.latent_shape
    with pytest.raises(ValueError, match="StableCascadePriorPipeline has no decoder"):
        LatentView(pipe=built(case_of("StableCascadePriorPipeline"))[0])


def test_a_pipeline_without_a_decoder_says_so():
    pipe, traj = built(case_of("StableCascadePriorPipeline"))
    assert not has_decoder(pipe) and traj.capabilities["previews"] is False
    with pytest.raises(ValueError, match="StableCascadePriorPipeline has no decoder"):
        decoder_of(pipe)
    assert nbd.load_pipeline(pipe) is pipe  # accepted: watched, without previews


@pytest.mark.parametrize("name, why", [
    ("ErnieImagePipeline", "its latents have 16 channels and its VAE takes 4"),  # patchified 2 x 2
    ("BriaFibo2Pipeline", "its VAE (AutoencoderKLFlux2) has no scaling_factor"),  # batch-normed the Flux 2 way
])
def test_latents_the_vae_does_not_decode_as_they_are_have_no_previews_and_say_why(name, why, tmp_path):
    """(B, C, h, w) latents that are not what the VAE decodes as latents / scaling_factor: no frames (drawing them
    failed the run at its first step), a notice, and the saved run still attaches to its pipeline."""
    pipe, traj = built(case_of(name))
    assert traj.final_latents.ndim == 3 and traj.capabilities["previews"] is False
    assert any(why in notice for notice in traj.params["notices"])
    traj.save(tmp_path / "run.nbd")
    assert nbd.Trajectory.load(tmp_path / "run.nbd").attach(pipe).pipe is pipe


def test_a_packed_run_attaches_to_its_pipeline(tmp_path):
    """Flux2Pipeline's steps are packed tokens (64 x 16): their 64 is no count of the VAE's latent channels."""
    pipe, traj = built(case_of("Flux2Pipeline"))
    assert traj.initial_latents.ndim == 3 and pipe.vae.config.latent_channels != traj.initial_latents.shape[1]
    traj.save(tmp_path / "run.nbd")
    assert nbd.Trajectory.load(tmp_path / "run.nbd").attach(pipe).pipe is pipe
