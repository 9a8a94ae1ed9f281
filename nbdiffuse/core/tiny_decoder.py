"""TinyDecoder: a small convolutional latent -> RGB decoder, distilled from a model's own VAE.

It stands where a diffusers AutoencoderTiny (TAESD) stands: `nbd.set_tiny_decoder(pipe, tiny)`,
`traj.image(k, decoder="tiny")` and the Explorer's frames, through the same `decode()` and config
(scaling_factor, shift_factor) that full_decode reads. Why not an AutoencoderTiny: its blocks keep
one channel count at every resolution, so nearly all of its work is at the output size. The
embedded model's does all of its thinking at latent resolution (four 3 x 3 convolutions of 64
channels, a receptive field of 9 x 9 latent pixels) and then turns each latent pixel into a 4 x 4
block of the picture (a convolution and pixel shuffle; 3 x 3 in the shipped one since its third round,
so that each block also reads its neighbours and the blocks' edges meet, where a 1 x 1 one left a faint
grid: distil_tiny.grid_excess 1.57 -> 1.31, the frame 1.06 x the cost): a step's x0 and x_t frames cost
~1.8 ms of one CPU thread, where a (64, 32, 16)-channel decoder that works at each resolution took
3.8 ms. Measured while choosing (3000 training steps, held-out x0 frames of every step): 64 channels
and 2 convolutions 6.0 of 255, 4 convolutions 4.8, 6 of 80 channels 5.4, (64, 32) channels with a
2 x upsampling before a last convolution 4.8 at the same cost; group norms and early steps drawn
4 x as often gained nothing; 9000 steps gave 4.4. It also sees the
whole latent's per-channel mean and spread (as the approx decoder's global context does), as a
bias of each convolution: the VAE decoder's group norms read the whole picture, so one local
latent can decode white on one picture and light blue on another.

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
    def __init__(self, latent_channels: int = 4, channels: Sequence[int] = (64,),
                 convs: Sequence[int] = (4,), patch: int = 4, global_context: bool = True,
                 norm_groups: int = 0, scaling_factor: float = 1.0, shift_factor: float = 0.0, force_upcast: bool = False,
                 last_kernel: int = 1):
        super().__init__()
        if len(channels) != len(convs) or not channels:
            raise ValueError(f"channels and convs must be non-empty and of one length; got {channels} and {convs}")
        self.first = nn.Conv2d(latent_channels, channels[0], 3, padding=1)
        # global context: a bias from the whole latent's per-channel mean and spread for every
        # convolution at latent resolution (the first and those of the first level)
        self.glob = nn.Linear(2 * latent_channels, channels[0] * (1 + convs[0])) if global_context else None
        self.levels = nn.ModuleList()
        # norm_groups > 0: a group norm before each activation at latent resolution, as the VAE's
        # decoder has (its norms read the whole picture: a faint blurry latent decodes to strong colours)
        self.norms = nn.ModuleList(nn.GroupNorm(norm_groups, channels[0]) for _ in range(convs[0])) \
            if norm_groups else None
        self.ups = nn.ModuleList()
        for i, (width, count) in enumerate(zip(channels, convs)):
            self.levels.append(nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(count)))
            if i + 1 < len(channels):
                self.ups.append(nn.Conv2d(width, 4 * channels[i + 1], 1))
        # patch > 1: the last level's pixels each become a patch x patch block of RGB (a convolution, pixel
        # shuffle). last_kernel 3: each block also reads its neighbours, so the blocks' edges meet (with
        # 1 x 1 a block knows only its own pixel's features and the picture shows a faint patch-sized grid)
        if last_kernel not in (1, 3):
            raise ValueError(f"last_kernel must be 1 or 3; got {last_kernel!r}")
        self.last = nn.Conv2d(channels[-1], 3, 3, padding=1) if patch == 1 else \
            nn.Conv2d(channels[-1], 3 * patch ** 2, last_kernel, padding=last_kernel // 2)
        self.patch = patch

    @property
    def upscale(self) -> int:
        """Output pixels per latent pixel along each side."""
        return 2 ** (len(self.levels) - 1) * self.patch

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.first(latents)
        biases = [None] * (1 + len(self.levels[0]))
        if self.glob is not None:
            biases = self.glob(global_features(latents).to(x.dtype))[:, :, None, None].chunk(len(biases), dim=1)
            x = x + biases[0]
        x = torch.relu(x)
        for i, level in enumerate(self.levels):
            for j, conv in enumerate(level):
                pre = conv(x)
                if i == 0 and self.norms is not None:
                    pre = self.norms[j](pre)
                if i == 0 and biases[j + 1] is not None:
                    pre = pre + biases[j + 1]
                x = torch.relu(pre) + x  # residual: each conv refines, none has to carry the picture
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
