"""LatentView: a picture, its latent channels, the approx linear decode, the full VAE decode (round trip)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import traitlets as tl
from PIL import Image

from ...core.decode import approx_decoder_for, full_decode
from ...core.pipe_decoder import decoder_of
from .common import (TeachingWidget, as_image, fit_for_display, lossless, model_label, model_size, resolve_pipe,
                     to_tensor, vae_encode)

DISPLAY = 256


def channel_tile(channel: np.ndarray) -> tuple[Image.Image, float, float]:
    """One latent channel as grayscale, stretched from its own min (black) to max (white)."""
    lo, hi = float(channel.min()), float(channel.max())
    scaled = (channel - lo) / (hi - lo) if hi > lo else np.zeros_like(channel)
    return Image.fromarray((scaled * 255 + 0.5).astype(np.uint8), "L"), lo, hi


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB between two same-size pictures (higher: closer)."""
    x = np.asarray(a, np.float64) / 255
    y = np.asarray(b, np.float64) / 255
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


class LatentView(TeachingWidget):
    """`nbd.LatentView(image=None, pipe=None)`: what the VAE makes of a picture.

    Shows the picture at the model's size, its latent channels as grayscale tiles (each stretched
    to its own range, which is printed), the approx linear decode (a C x 3 matrix: what live
    previews use), and the full VAE decode of the latents, i.e. the round trip picture -> latents
    -> picture, with its PSNR. `latents` is the (1, C, h, w) tensor in the pipeline's space.
    """

    original = tl.Bytes(b"").tag(sync=True)
    channels = tl.List(tl.Bytes()).tag(sync=True)
    channel_ranges = tl.List(tl.List(tl.Float())).tag(sync=True)
    approx = tl.Bytes(b"").tag(sync=True)
    full = tl.Bytes(b"").tag(sync=True)
    round_trip_psnr = tl.Float(0.0).tag(sync=True)
    latent_shape = tl.List(tl.Int()).tag(sync=True)
    image_size = tl.List(tl.Int(), default_value=[0, 0]).tag(sync=True)

    def __init__(self, image: Any = None, pipe: Any = None):
        self.pipe = resolve_pipe(pipe)
        size = model_size(self.pipe)
        self.image = as_image(image).resize(size, Image.LANCZOS)
        self.latents = vae_encode(self.pipe, to_tensor(self.image))
        self.decoded = full_decode(decoder_of(self.pipe), self.latents)
        self.approx_image = approx_decoder_for(decoder_of(self.pipe))(self.latents[0])
        tiles, ranges = [], []
        for c in self.latents[0].numpy():
            tile, lo, hi = channel_tile(c)
            tiles.append(lossless(tile))
            ranges.append([lo, hi])
        score = psnr(self.image, self.decoded)
        c, h, w = self.latents.shape[1:]
        super().__init__(_kind="latent", title="Latent space and the VAE",
                         note=f"{size[0]}×{size[1]}×3 pixels ↔ {w}×{h}×{c} latents "
                              f"({size[0] * size[1] * 3 / (c * h * w):.0f}× fewer numbers); VAE of {model_label(self.pipe)}",
                         original=lossless(fit_for_display(self.image, DISPLAY)), channels=tiles, channel_ranges=ranges,
                         approx=lossless(self.approx_image), full=lossless(fit_for_display(self.decoded, DISPLAY)),
                         round_trip_psnr=min(score, 99.0), latent_shape=[c, h, w], image_size=list(size))

    def round_trip(self) -> Image.Image:
        """decode(encode(image)) with the full VAE."""
        return self.decoded

    def __repr__(self) -> str:
        return f"LatentView(latents={tuple(self.latent_shape)}, round_trip_psnr={self.round_trip_psnr:.1f} dB)"


