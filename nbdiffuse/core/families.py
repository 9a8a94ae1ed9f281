"""Per-family adapters: how to encode a prompt and call the denoiser of one pipeline family.

The denoising loop in trace.py is the same for all families; what differs (text
encoders, extra conditioning, latent layout, what "guidance" means) lives here. A new
family is one more adapter class registered in _families(). Flux and PixArt live in
family_flux.py and family_pixart.py.

Every adapter works on latents in the (1, C, h, w) layout the VAE decodes: a family whose
denoiser wants another layout (Flux packs 2x2 patches into tokens) converts inside predict(),
so trajectories, previews and branches always see (C, h, w) latents.
"""
from __future__ import annotations

import functools
import inspect
import weakref

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor


@dataclass
class Conditioning:
    """Text conditioning for one run, uncond first as diffusers batches it."""
    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor]
    both: dict[str, torch.Tensor] = field(default_factory=dict)


class StableDiffusionFamily:
    """StableDiffusionPipeline: SD 1.x / 2.x (epsilon and v-prediction) and look-alikes."""

    name = "stable-diffusion"
    # What trace's `guidance` means: "cfg" (classifier-free guidance, a (cond, uncond) pair per
    # step when > 1) or "distilled" (a model input, one evaluation, nothing to re-weigh: Flux-dev).
    guidance_kind = "cfg"
    default_guidance = 7.5  # what the family's own pipeline uses by default (for UIs)

    def __init__(self, pipe: Any):
        self.pipe = pipe

    # An adapter lives for one prepared run or branch (family_for makes a new one each time), so
    # device and dtype are looked up once: diffusers finds the device by walking every module of
    # every component (~3 ms a look-up on the shapes model, more on large ones).
    @functools.cached_property
    def device(self) -> torch.device:
        return _placement(self.pipe, self.denoiser)[0]

    @property
    def denoiser(self) -> Any:
        return self.pipe.unet

    @functools.cached_property
    def dtype(self) -> torch.dtype:
        return _placement(self.pipe, self.denoiser)[1]

    @property
    def vae_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels)

    def default_size(self) -> tuple[int, int]:
        sample = self.denoiser.config.sample_size
        side = (sample if isinstance(sample, int) else sample[0]) * self.vae_factor
        return side, side

    def encode(self, prompt: str, negative_prompt: str | None, size: tuple[int, int] | None = None) -> Conditioning:
        pos, neg = self.pipe.encode_prompt(prompt, self.device, 1, True, negative_prompt or None)
        return self._pack({"encoder_hidden_states": pos}, {"encoder_hidden_states": neg})

    @staticmethod
    def _pack(cond: dict, uncond: dict) -> Conditioning:
        both = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
        return Conditioning(cond=cond, uncond=uncond, both=both)

    def initial_latents(self, height: int, width: int, generator: torch.Generator, scheduler: Any) -> torch.Tensor:
        shape = (1, self.latent_channels, height // self.vae_factor, width // self.vae_factor)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        return noise * getattr(scheduler, "init_noise_sigma", 1.0)

    def set_timesteps(self, scheduler: Any, steps: int, height: int, width: int) -> None:
        scheduler.set_timesteps(steps, device=self.device)

    def _unet_kwargs(self, conditioning: dict) -> dict:
        return {"encoder_hidden_states": conditioning["encoder_hidden_states"]}

    def text_readers(self) -> list[tuple[str, Any, int]]:
        """(name, tokenizer, tokens it reads) for each text encoder: prompts longer than that are truncated."""
        tokenizer = getattr(self.pipe, "tokenizer", None)
        if tokenizer is None:
            return []
        return [("the text encoder", tokenizer, int(getattr(tokenizer, "model_max_length", 0) or 0))]

    def uses_cfg(self, guidance: float) -> bool:
        """Whether a step at this guidance runs classifier-free guidance (diffusers: guidance > 1)."""
        return guidance > 1.0

    def predict(self, x_in: torch.Tensor, t: torch.Tensor, cond: Conditioning, guided: bool,
                guidance: float | None = None):
        """Model outputs (cond, uncond); uncond is None when guidance is off (one batch row).

        guided: run the (cond, uncond) pair (uses_cfg(guidance)); guidance: the step's value, for
        families that feed it to the model (Flux-dev); CFG families combine the pair in the loop.
        """
        if guided:
            out = self.pipe.unet(torch.cat([x_in, x_in]), t, return_dict=False, **self._unet_kwargs(cond.both))[0]
            uncond, cond_out = out.chunk(2)
            return cond_out, uncond
        out = self.pipe.unet(x_in, t, return_dict=False, **self._unet_kwargs(cond.cond))[0]
        return out, None


class StableDiffusionXLFamily(StableDiffusionFamily):
    """StableDiffusionXLPipeline (and SDXL Turbo checkpoints): two text encoders, size conditioning."""

    name = "stable-diffusion-xl"
    default_guidance = 5.0

    def encode(self, prompt: str, negative_prompt: str | None, size: tuple[int, int] | None = None) -> Conditioning:
        # "" -> None keeps SDXL's own default (zeroed negative embeddings when
        # force_zeros_for_empty_prompt), exactly what pipe(...) does without a negative prompt.
        pos, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=prompt, device=self.device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative_prompt or None,
        )
        height, width = size or self.default_size()
        if self.pipe.text_encoder_2 is None:
            projection_dim = int(pooled.shape[-1])
        else:
            projection_dim = self.pipe.text_encoder_2.config.projection_dim
        time_ids = self.pipe._get_add_time_ids(
            (height, width), (0, 0), (height, width), dtype=pos.dtype, text_encoder_projection_dim=projection_dim
        ).to(self.device)
        return self._pack(
            {"encoder_hidden_states": pos, "text_embeds": pooled, "time_ids": time_ids},
            {"encoder_hidden_states": neg, "text_embeds": neg_pooled, "time_ids": time_ids},
        )

    def _unet_kwargs(self, conditioning: dict) -> dict:
        return {
            "encoder_hidden_states": conditioning["encoder_hidden_states"],
            "added_cond_kwargs": {"text_embeds": conditioning["text_embeds"], "time_ids": conditioning["time_ids"]},
        }


class StableDiffusion3Family(StableDiffusionFamily):
    """StableDiffusion3Pipeline: an MMDiT transformer on flow-matching latents, x0 = x_t - sigma * v."""

    name = "stable-diffusion-3"
    default_guidance = 7.0

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

    def predict(self, x_in: torch.Tensor, t: torch.Tensor, cond: Conditioning, guided: bool,
                guidance: float | None = None):
        batch = torch.cat([x_in, x_in]) if guided else x_in
        kwargs = cond.both if guided else cond.cond
        out = self.pipe.transformer(hidden_states=batch, timestep=t.expand(batch.shape[0]), return_dict=False,
                                    **kwargs)[0]
        if guided:
            uncond, cond_out = out.chunk(2)
            return cond_out, uncond
        return out, None


def _families() -> list[tuple[type, type]]:
    from diffusers import (FluxPipeline, PixArtAlphaPipeline, PixArtSigmaPipeline, StableDiffusion3Pipeline,
                           StableDiffusionPipeline, StableDiffusionXLPipeline)

    from .family_flux import FluxFamily
    from .family_pixart import PixArtFamily

    return [(StableDiffusionXLPipeline, StableDiffusionXLFamily), (StableDiffusionPipeline, StableDiffusionFamily),
            (StableDiffusion3Pipeline, StableDiffusion3Family), (FluxPipeline, FluxFamily),
            (PixArtSigmaPipeline, PixArtFamily), (PixArtAlphaPipeline, PixArtFamily)]


def supported_pipelines() -> list[str]:
    return [pipe_cls.__name__ for pipe_cls, _ in _families()]


_placements: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()


def _placement(pipe: Any, denoiser: Any) -> tuple[torch.device, torch.dtype]:
    """pipe._execution_device and the denoiser's dtype, looked up again only when what decides
    them changed: the denoiser, its first parameter's device and dtype, offload hooks (accelerate's
    or diffusers' own) and the pipeline's model-offload settings. The look-up walks every module
    of every component (~10 ms on the shapes model): without this, every run and branch paid it."""
    param = next(denoiser.parameters(), None)
    key = (id(denoiser), None if param is None else (param.device, param.dtype),
           getattr(denoiser, "_hf_hook", None) is not None, getattr(denoiser, "_diffusers_hook", None) is not None,
           getattr(pipe, "_offload_gpu_id", None), str(getattr(pipe, "_offload_device", None)))
    try:
        found = _placements.get(pipe)
    except TypeError:  # not weakly referenceable: look up every time
        found = None
    if found is not None and found[0] == key:
        return found[1], found[2]
    device, dtype = pipe._execution_device, denoiser.dtype
    try:
        _placements[pipe] = (key, device, dtype)
    except TypeError:
        pass
    return device, dtype


def family_for(pipe: Any) -> StableDiffusionFamily:
    """The adapter for `pipe`, or a TypeError that lists what is supported."""
    for pipe_cls, family_cls in _families():
        if isinstance(pipe, pipe_cls):
            return family_cls(pipe)
    raise TypeError(
        f"pipe must be a supported diffusers pipeline ({', '.join(supported_pipelines())}); "
        f"got {type(pipe).__name__}. Load one with nbd.load_pipeline()."
    )
