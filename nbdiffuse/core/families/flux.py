"""FluxPipeline: a flow-matching transformer on 2x2-packed latents, with distilled guidance.

Adapted from diffusers' FluxPipeline.__call__ (Apache-2.0), step for step, so that trace()
reproduces pipe(...) bit for bit. Two things differ from the other families:

- Layout. Flux's transformer reads latents packed into tokens: each 2x2 patch of the
  (C, h, w) latent becomes one token of 4C features. The loop, the sampler (elementwise) and
  every record keep the (1, C, h, w) layout the VAE decodes; predict() packs the input and
  unpacks the output. Packing is a permutation, so nothing changes numerically.
- Guidance. Flux-dev (transformer config guidance_embeds=True) was distilled from a CFG
  teacher: the guidance value is a model *input*, one evaluation per step, no unconditional
  branch. For such a model trace's `guidance` is that value (what FluxPipeline's
  `guidance_scale` sets), read every step, so live guidance changes work. Steps record no
  eps_uncond, so guided_x0 (re-weighing a (cond, uncond) pair) cannot answer what-ifs:
  params["guidance_kind"] == "distilled" tells a UI to say so. A Flux without guidance
  embeddings (Flux-schnell) has nothing to distil: there `guidance` > 1 is true CFG with the
  negative prompt, what FluxPipeline does with `true_cfg_scale` and a `negative_prompt`
  (two evaluations per step), and everything CFG gives (eps pairs, guided_x0) works.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .base import Conditioning, own_guidance
from .sd3 import StableDiffusion3Family


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C) tokens, as FluxPipeline._pack_latents."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h/2 * w/2, 4C) tokens -> (B, C, h, w), as FluxPipeline._unpack_latents."""
    b, _, features = tokens.shape
    x = tokens.view(b, h // 2, w // 2, features // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, features // 4, h, w)


class FluxFamily(StableDiffusion3Family):
    """FluxPipeline (Flux.1-dev, -schnell and fine-tunes)."""

    name = "flux"
    max_sequence_length = 512  # FluxPipeline's default for the T5 prompt
    honoured_pipe_kwargs: dict = {"max_sequence_length": 512}
    img2img_rule = "flux"  # FluxImg2ImgPipeline starts where its get_timesteps does (core/img2img.py)
    encodes_start_always = True  # its inpainting pipelines encode the start picture at strength 1 too

    def __init__(self, pipe: Any):
        super().__init__(pipe)
        self.distilled = bool(self.denoiser.config.get("guidance_embeds", False))
        self.guidance_kind = "distilled" if self.distilled else "cfg"
        # a distilled one's: its pipeline's own default (FluxPipeline's 3.5, its image-to-image and inpainting
        # ones' 7, Flux Fill's 30); a CFG one's: 1, CFG off (FluxPipeline's true_cfg_scale)
        call = inspect.signature(type(pipe).__call__).parameters
        self.default_guidance = own_guidance(call, 3.5) if self.distilled else 1.0

    @property
    def latent_scale(self) -> int:
        """Image pixels per latent pixel."""
        return int(self.pipe.vae_scale_factor)

    @property
    def vae_factor(self) -> int:
        # Image sides must be multiples of this: the VAE's factor times the 2x2 packing.
        return 2 * self.latent_scale

    @property
    def latent_channels(self) -> int:
        """Channels of the latents it denoises: its packed output features / 4 (Flux Fill's transformer reads more)."""
        config = self.denoiser.config
        return int(config.get("out_channels") or config.in_channels) // 4

    def default_size(self) -> tuple[int, int]:
        side = int(getattr(self.pipe, "default_sample_size", 128)) * self.latent_scale
        return side, side

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return 2 * (height // self.vae_factor), 2 * (width // self.vae_factor)

    def uses_cfg(self, guidance: float) -> bool:
        return not self.distilled and guidance > 1.0

    def encode(self, prompt: str, negative_prompt: str | None, size: tuple[int, int] | None = None) -> Conditioning:
        height, width = size or self.default_size()
        h, w = self.latent_size(height, width)
        cond = self._encode_one(prompt)
        # Token positions of the packed latents (in the prompt embeddings' dtype, as FluxPipeline makes them).
        image_ids = self.pipe._prepare_latent_image_ids(1, h // 2, w // 2, self.device,
                                                        cond["encoder_hidden_states"].dtype)
        cond["img_ids"] = image_ids
        # A distilled model never runs the negative prompt; a CFG one may need it at any step (live guidance).
        uncond = {} if self.distilled else dict(self._encode_one(negative_prompt or ""), img_ids=image_ids)
        return Conditioning(cond=cond, uncond=uncond)

    def _encode_one(self, prompt: str) -> dict:
        embeds, pooled, text_ids = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, device=self.device,
                                                          num_images_per_prompt=1,
                                                          max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}

    def initial_latents(self, height: int, width: int, generator: torch.Generator, scheduler: Any) -> torch.Tensor:
        # FluxPipeline draws (1, C, h, w) noise, then packs it: the same numbers, unpacked.
        shape = (1, self.latent_channels, *self.latent_size(height, width))
        return randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)

    def text_readers(self) -> list[tuple[str, Any, int]]:
        return [("CLIP (pooled)", self.pipe.tokenizer, int(self.pipe.tokenizer.model_max_length)),
                ("T5", self.pipe.tokenizer_2, self.max_sequence_length)]

    def set_timesteps(self, scheduler: Any, steps: int, height: int, width: int) -> None:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        accepts = inspect.signature(scheduler.set_timesteps).parameters
        if "sigmas" not in accepts or "mu" not in accepts:  # FlowMatchHeun: its own shift only
            scheduler.set_timesteps(steps, device=self.device)
            return
        h, w = self.latent_size(height, width)
        cfg = scheduler.config
        mu = calculate_shift((h // 2) * (w // 2), cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                             cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
        if cfg.get("use_flow_sigmas"):
            scheduler.set_timesteps(steps, device=self.device, mu=mu)
        else:
            sigmas = np.linspace(1.0, 1 / steps, steps)
            scheduler.set_timesteps(sigmas=sigmas, device=self.device, mu=mu)

    def predict(self, x_in: torch.Tensor, t: torch.Tensor, cond: Conditioning, guided: bool,
                guidance: float | None = None, extra: dict | None = None):
        h, w = x_in.shape[-2:]
        tokens = pack(x_in)
        timestep = t.expand(tokens.shape[0]).to(tokens.dtype) / 1000
        embedded = None
        if self.distilled:
            if guidance is None:
                raise ValueError("a guidance-distilled Flux needs the step's guidance value")
            embedded = torch.full([1], float(guidance), device=tokens.device, dtype=torch.float32)
            embedded = embedded.expand(tokens.shape[0])
        # a ControlNet's residuals (core/controlnet_flux.py) go to both evaluations, as FluxControlNetPipeline's
        cond_out = self._transformer(tokens, timestep, embedded, {**cond.cond, **(extra or {})}, "cond")
        uncond_out = self._transformer(tokens, timestep, embedded, {**cond.uncond, **(extra or {})},
                                       "uncond") if guided else None
        return unpack(cond_out, h, w), None if uncond_out is None else unpack(uncond_out, h, w)

    def _transformer(self, tokens, timestep, guidance, kwargs: dict, branch: str) -> torch.Tensor:
        transformer = self.pipe.transformer
        # cond and uncond run as two calls, as FluxPipeline does (and its caching hooks expect).
        context = getattr(transformer, "cache_context", None)
        with context(branch) if context is not None else contextlib.nullcontext():
            return transformer(hidden_states=tokens, timestep=timestep, guidance=guidance, return_dict=False,
                               **kwargs)[0]
