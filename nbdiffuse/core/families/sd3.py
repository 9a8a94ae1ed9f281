"""StableDiffusion3Pipeline: an MMDiT transformer on flow-matching latents."""
from __future__ import annotations

import inspect
from typing import Any

import torch

from .base import Conditioning
from .sd import StableDiffusionFamily


class StableDiffusion3Family(StableDiffusionFamily):
    """StableDiffusion3Pipeline: an MMDiT transformer on flow-matching latents, x0 = x_t - sigma * v."""

    name = "stable-diffusion-3"
    default_guidance = 7.0
    honoured_pipe_kwargs: dict = {"clip_skip": None, "max_sequence_length": 256}
    img2img_rule = "flux"  # StableDiffusion3Img2ImgPipeline counts its steps as Flux's does (core/img2img.py)
    control_sets_size = False  # its ControlNet pipeline keeps its usual size (Flux's too)

    @property
    def denoiser(self) -> Any:
        return self.pipe.transformer

    def encode(self, prompt: str, negative_prompt: str | None, size: tuple[int, int] | None = None) -> Conditioning:
        pos, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, negative_prompt=negative_prompt or "",
            do_classifier_free_guidance=True, device=self.device, num_images_per_prompt=1,
        )
        return self._pack({"encoder_hidden_states": pos, "pooled_projections": pooled},
                          {"encoder_hidden_states": neg, "pooled_projections": neg_pooled})

    def text_readers(self) -> list[tuple[str, Any, int]]:
        readers = [("CLIP", self.pipe.tokenizer, int(self.pipe.tokenizer.model_max_length))]
        if getattr(self.pipe, "text_encoder_3", None) is not None and getattr(self.pipe, "tokenizer_3", None) is not None:
            readers.append(("T5", self.pipe.tokenizer_3, 256))  # StableDiffusion3Pipeline's max_sequence_length
        return readers

    def set_timesteps(self, scheduler: Any, steps: int, height: int, width: int) -> None:
        kwargs = {}
        # FlowMatchHeun takes no `mu`: it keeps the shift of its own config.
        if scheduler.config.get("use_dynamic_shifting") and "mu" in inspect.signature(scheduler.set_timesteps).parameters:
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            patch = self.denoiser.config.patch_size
            seq_len = (height // self.vae_factor // patch) * (width // self.vae_factor // patch)
            kwargs["mu"] = calculate_shift(seq_len, scheduler.config.get("base_image_seq_len", 256),
                                           scheduler.config.get("max_image_seq_len", 4096),
                                           scheduler.config.get("base_shift", 0.5), scheduler.config.get("max_shift", 1.16))
        scheduler.set_timesteps(steps, device=self.device, **kwargs)

    def _denoise(self, batch: torch.Tensor, t: torch.Tensor, rows: dict, guidance: float | None,
                 extra: dict | None) -> torch.Tensor:
        return self.pipe.transformer(hidden_states=batch, timestep=t.expand(batch.shape[0]), return_dict=False,
                                     **rows, **(extra or {}))[0]
