"""StableDiffusionFamily: SD 1.x / 2.x, and the adapter every other family subclasses."""
from __future__ import annotations

import functools
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from .. import inpaint_loop
from .base import Conditioning, placement


class StableDiffusionFamily:
    """StableDiffusionPipeline: SD 1.x / 2.x (epsilon and v-prediction) and look-alikes."""

    name = "stable-diffusion"
    # What trace's `guidance` means: "cfg" (classifier-free guidance, a (cond, uncond) pair per
    # step when > 1) or "distilled" (a model input, one evaluation, nothing to re-weigh: Flux-dev).
    guidance_kind = "cfg"
    default_guidance = 7.5  # what the family's own pipeline uses by default (for UIs)
    # pipe(...) keywords this loop already runs as pipe(...) does with that value (core/pipe_kwargs.py)
    honoured_pipe_kwargs: dict = {"eta": 0.0, "guidance_rescale": 0.0, "clip_skip": None}
    # a run with a control picture and no height/width takes the picture's size, as diffusers' SD and SDXL
    # ControlNet pipelines do (SD3's and Flux's keep their usual size: `height or default_sample_size * factor`)
    control_sets_size = True
    upcasts_encoder = False  # SD's pipelines encode a picture in the VAE's own dtype (SDXL's: core/img2img.py)

    def __init__(self, pipe: Any):
        self.pipe = pipe
        # A guidance-embedding UNet (time_cond_proj_dim: LCM-distilled) runs no CFG: diffusers feeds it
        # timestep_cond = get_guidance_scale_embedding(guidance - 1), one evaluation a step. Guidance is
        # then a model input, as Flux-dev's: live changes work, a what-if needs a branch.
        self.guidance_dim = self.denoiser.config.get("time_cond_proj_dim")
        self.distilled = self.guidance_dim is not None
        if self.distilled:
            self.guidance_kind = "distilled"

    # An adapter lives for one prepared run or branch (family_for makes a new one each time), so
    # device and dtype are looked up once: diffusers finds the device by walking every module of
    # every component (~3 ms a look-up on the shapes model, more on large ones).
    @functools.cached_property
    def device(self) -> torch.device:
        return placement(self.pipe, self.denoiser)[0]

    @property
    def denoiser(self) -> Any:
        return self.pipe.unet

    @functools.cached_property
    def dtype(self) -> torch.dtype:
        return placement(self.pipe, self.denoiser)[1]

    @property
    def vae_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def latent_channels(self) -> int:
        """Channels of the latents the loop denoises: the denoiser's input, or the VAE's latent channels where the
        denoiser reads the mask and the masked picture's latents beside them (core/inpaint_loop.py reads_mask)."""
        return inpaint_loop.latent_channels(self) if inpaint_loop.reads_mask(self) else \
            int(self.denoiser.config.in_channels)

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
        """Whether a step at this guidance runs classifier-free guidance (diffusers: guidance > 1, and
        never for a guidance-embedding UNet)."""
        return not self.distilled and guidance > 1.0

    def _guidance_input(self, guidance: float | None, dtype: torch.dtype) -> dict:
        """timestep_cond for a guidance-embedding UNet, as StableDiffusionPipeline makes it; else nothing."""
        if not self.distilled:
            return {}
        if guidance is None:
            raise ValueError("a guidance-embedding UNet (time_cond_proj_dim) needs the step's guidance value")
        w = torch.tensor(float(guidance) - 1).repeat(1)
        embedded = self.pipe.get_guidance_scale_embedding(w, embedding_dim=self.guidance_dim)
        return {"timestep_cond": embedded.to(device=self.device, dtype=dtype)}

    def predict(self, x_in: torch.Tensor, t: torch.Tensor, cond: Conditioning, guided: bool,
                guidance: float | None = None, extra: dict | None = None):
        """Model outputs (cond, uncond); uncond is None when guidance is off (one batch row).

        guided: run the (cond, uncond) pair (uses_cfg(guidance)); guidance: the step's value, for
        families that feed it to the model (Flux-dev); CFG families combine the pair in the loop.
        extra: more denoiser arguments for this evaluation (a ControlNet's residuals, core/controlnet.py).
        """
        if guided:
            uncond, cond_out = self._rows_out(x_in, t, cond.rows(True), 2, guidance, extra)
            return cond_out, uncond
        return self._rows_out(x_in, t, cond.rows(False), 1, guidance, extra)[0], None

    def predict_perturbed(self, x_in: torch.Tensor, t: torch.Tensor, cond: Conditioning, guided: bool,
                          guidance: float | None = None, extra: dict | None = None):
        """PAG's step (core/pag.py): outputs (cond, uncond, perturbed), uncond None when guidance is off;
        the batch is diffusers' (uncond, cond, perturbed), its last row through the perturbed layers."""
        if guided:
            uncond, cond_out, perturbed = self._rows_out(x_in, t, cond.rows(True, perturbed=True), 3, guidance, extra)
            return cond_out, uncond, perturbed
        cond_out, perturbed = self._rows_out(x_in, t, cond.rows(False, perturbed=True), 2, guidance, extra)
        return cond_out, None, perturbed

    def _rows_out(self, x_in: torch.Tensor, t: torch.Tensor, rows: dict, n: int, guidance: float | None,
                  extra: dict | None) -> tuple:
        """One denoiser call on `n` copies of x_in with the text rows `rows`: its output split per row."""
        out = self._denoise(x_in if n == 1 else torch.cat([x_in] * n), t, rows, guidance, extra)
        return out.chunk(n) if n > 1 else (out,)

    def _denoise(self, batch: torch.Tensor, t: torch.Tensor, rows: dict, guidance: float | None,
                 extra: dict | None) -> torch.Tensor:
        """The denoiser's output for `batch` (the family's own call: SD's UNet; SD3's and PixArt's transformer)."""
        timestep_cond = self._guidance_input(guidance, batch.dtype)  # a guidance-embedding UNet's (never guided)
        return self.pipe.unet(batch, t, return_dict=False, **self._unet_kwargs(rows), **timestep_cond,
                              **(extra or {}))[0]
