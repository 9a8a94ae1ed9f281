"""PixArt-alpha / PixArt-sigma: a DiT with a T5 text encoder and learned sigma.

Adapted from diffusers' PixArtAlphaPipeline / PixArtSigmaPipeline.__call__ (Apache-2.0).
The transformer predicts noise and, for learned-sigma checkpoints, a variance: 2C output
channels for C latent ones. The pipelines drop the variance half after guidance; guidance
is elementwise, so dropping it first (here) gives the same numbers, and eps_cond / eps_uncond
are then plain epsilon predictions that x0 and guided_x0 work with.

Two deliberate differences from pipe(...)'s defaults, both to run exactly what was asked:
- no resolution binning: the requested height and width are used as they are (the
  pipelines snap them to a trained aspect-ratio bin and resize the image back);
  pipe(..., use_resolution_binning=False) matches trace().
- no caption cleaning: the T5 encoder reads the prompt as typed (clean_caption=False; the
  pipelines' default cleaning needs bs4 and ftfy and lower-cases and strips the text).
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Conditioning
from .sd import StableDiffusionFamily


class PixArtFamily(StableDiffusionFamily):
    """PixArtAlphaPipeline and PixArtSigmaPipeline (and its PAG sibling, core/pag.py)."""

    name = "pixart"
    default_guidance = 4.5
    honoured_pipe_kwargs: dict = {"use_resolution_binning": False, "clean_caption": False}

    def __init__(self, pipe: Any):
        super().__init__(pipe)
        from diffusers import PixArtSigmaPAGPipeline, PixArtSigmaPipeline

        self.sigma = isinstance(pipe, (PixArtSigmaPipeline, PixArtSigmaPAGPipeline))
        self.max_sequence_length = 300 if self.sigma else 120  # the pipelines' defaults
        self.name = "pixart-sigma" if self.sigma else "pixart-alpha"

    @property
    def denoiser(self) -> Any:
        return self.pipe.transformer

    @property
    def learned_sigma(self) -> bool:
        return int(self.denoiser.config.out_channels or 0) // 2 == self.latent_channels

    def text_readers(self) -> list[tuple[str, Any, int]]:
        return [("T5", self.pipe.tokenizer, self.max_sequence_length)]

    def encode(self, prompt: str, negative_prompt: str | None, size: tuple[int, int] | None = None) -> Conditioning:
        pos, pos_mask, neg, neg_mask = self.pipe.encode_prompt(
            prompt, True, negative_prompt=negative_prompt or "", num_images_per_prompt=1, device=self.device,
            clean_caption=False, max_sequence_length=self.max_sequence_length,
        )
        cond = {"encoder_hidden_states": pos, "encoder_attention_mask": pos_mask}
        uncond = {"encoder_hidden_states": neg, "encoder_attention_mask": neg_mask}
        # PixArt-alpha 1024 (sample_size 128) is also conditioned on resolution and aspect ratio.
        if not self.sigma and self.denoiser.config.sample_size == 128:
            height, width = size or self.default_size()
            resolution = torch.tensor([[height, width]]).to(dtype=pos.dtype, device=self.device)
            aspect = torch.tensor([[float(height / width)]]).to(dtype=pos.dtype, device=self.device)
            for d in (cond, uncond):
                d.update(resolution=resolution, aspect_ratio=aspect)
        return self._pack(cond, uncond)

    def _denoise(self, batch: torch.Tensor, t: torch.Tensor, rows: dict, guidance: float | None,
                 extra: dict | None) -> torch.Tensor:
        """The transformer's output, the variance half of a learned-sigma output dropped: PixArt's samplers do not
        use it."""
        timestep = t.reshape(1).to(batch.device).expand(batch.shape[0])
        added = {"resolution": rows.get("resolution"), "aspect_ratio": rows.get("aspect_ratio")}
        out = self.pipe.transformer(batch, encoder_hidden_states=rows["encoder_hidden_states"],
                                    encoder_attention_mask=rows["encoder_attention_mask"], timestep=timestep,
                                    added_cond_kwargs=added, return_dict=False)[0]
        return out.chunk(2, dim=1)[0] if self.learned_sigma else out
