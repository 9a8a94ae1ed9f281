"""TinyDecoder: a small convolutional latent -> RGB decoder, distilled from a model's own VAE.

It stands where a diffusers AutoencoderTiny (TAESD) stands: `nbd.set_tiny_decoder(pipe, tiny)`,
`traj.image(k, decoder="tiny")` and the Explorer's live frames, through the same `decode()` and
config (scaling_factor, shift_factor) that full_decode reads. Why not an AutoencoderTiny: its
blocks keep one channel count at every resolution, so nearly all of its work is at the output
size; this one does its thinking at latent resolution and thins out as it upsamples (pixel
shuffle), which makes a 64 x 64 frame of the embedded model cost a fraction of a guided step on a
laptop CPU. It also sees the whole latent's per-channel mean and spread (as the approx decoder's
global context does): the VAE decoder's group norms read the whole picture, so one local latent
can decode white on one picture and light blue on another.

Saved and loaded with diffusers' save_pretrained / from_pretrained (config.json + safetensors).
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .decode import global_features


class TinyDecoder(ModelMixin, ConfigMixin):
    """(N, C, h, w) pipeline-space latents -> (N, 3, h * 2**(levels-1), w * ...) pictures in [-1, 1].

    channels: the width at each resolution, latent resolution first; each next level doubles the
    side (a 1 x 1 convolution to 4 x its width, then pixel shuffle). convs: 3 x 3 convolutions
    (with ReLU) at each level. patch: the last level's pixels become patch x patch blocks of the
    picture (so one level with patch 4 does all its work at latent resolution).
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, channels: Sequence[int] = (64, 32, 16),
                 convs: Sequence[int] = (2, 1, 1), patch: int = 1, global_context: bool = True,
                 scaling_factor: float = 1.0, shift_factor: float = 0.0, force_upcast: bool = False):
        super().__init__()
        if len(channels) != len(convs) or not channels:
            raise ValueError(f"channels and convs must be non-empty and of one length; got {channels} and {convs}")
        self.first = nn.Conv2d(latent_channels, channels[0], 3, padding=1)
        self.glob = nn.Linear(2 * latent_channels, channels[0]) if global_context else None
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (width, count) in enumerate(zip(channels, convs)):
            self.levels.append(nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(count)))
            if i + 1 < len(channels):
                self.ups.append(nn.Conv2d(width, 4 * channels[i + 1], 1))
        # patch > 1: the last level's pixels each become a patch x patch block of RGB (1 x 1 conv, pixel shuffle)
        self.last = nn.Conv2d(channels[-1], 3, 3, padding=1) if patch == 1 else nn.Conv2d(channels[-1], 3 * patch ** 2, 1)
        self.patch = patch

    @property
    def upscale(self) -> int:
        """Output pixels per latent pixel along each side."""
        return 2 ** (len(self.levels) - 1) * self.patch

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.first(latents)
        if self.glob is not None:
            x = x + self.glob(global_features(latents).to(x.dtype))[:, :, None, None]
        x = torch.relu(x)
        for i, level in enumerate(self.levels):
            for conv in level:
                x = torch.relu(conv(x)) + x  # residual: each conv refines, none has to carry the picture
            if i < len(self.ups):
                x = torch.relu(nn.functional.pixel_shuffle(self.ups[i](x), 2))
        x = self.last(x)
        return x if self.patch == 1 else nn.functional.pixel_shuffle(x, self.patch)

    def decode(self, latents: torch.Tensor, return_dict: bool = True):
        """As AutoencoderTiny.decode: (pictures,) with return_dict=False, pictures in [-1, 1]."""
        sample = self(latents).clamp(-1, 1)
        if not return_dict:
            return (sample,)
        from diffusers.models.autoencoders.vae import DecoderOutput

        return DecoderOutput(sample=sample)
