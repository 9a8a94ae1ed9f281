"""Inpainting in nbdiffuse's own loop: StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline (their PAG and
ControlNet siblings too), StableDiffusion3InpaintPipeline, FluxInpaintPipeline (its ControlNet one too) and
FluxFillPipeline run their family's loop (what-if, live guidance, branches, attention maps, decision curves), the way
their __call__ does it (a ControlNet reads x_t alone; the denoiser gets the mask after it).

Before the first step, with the run's generator, in their order: the picture's latents (a sample of the VAE's latent
distribution; SD's and SD3's draw it only where the run needs it: a blended run, or a strength below 1; Flux's
always), the start noise, then the latents of the picture with the part to repaint greyed out. A UNet made for
inpainting (2 C + 1 input channels) reads the mask, at the latents' size, and those masked-picture latents beside
x_t at every evaluation. Any other UNet is blended: after each sampler step the kept part of x_t is put back from
the picture's latents, noised with the start noise to the next step's level (the last step's: the picture's latents
themselves). SD3's transformer is read as a UNet here (16 channels blended, 33 reading the mask); flow matching
noises with scale_noise. Flux's inpainting pipeline is always blended, Flux Fill's transformer reads the masked
picture and the mask; their latents stay unpacked here as everywhere in Flux's loop (the blend is elementwise;
packing the channels x_t, masked picture, mask gives the tokens Flux Fill concatenates).

The masks, latents and noise (an `Inpainting`) go with the trajectory in memory; a branch of a loaded run makes them
again from the start picture and the mask its file keeps, with the run's seed (core/branch.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from .img2img import encode_pixels, noised, skip_picture_draw


@dataclass
class Inpainting:
    """What an inpainting run carries through its loop, on the model's device and in its dtype."""

    mask: torch.Tensor  # (1, 1, h, w): 1 where the model repaints (mask_latents; Flux Fill's: (1, f * f, h, w))
    masked: torch.Tensor  # (1, C, h, w): latents of the picture with the repainted part grey (what the denoiser reads)
    picture: torch.Tensor | None  # (1, C, h, w): the picture's latents (None where not drawn: see make)
    noise: torch.Tensor  # (1, C, h, w): the start noise, which noises the kept part again after each step
    reads_mask: bool  # the denoiser takes the mask and the masked picture's latents (reads_mask()); else blended
    mask_last: bool = False  # it reads them as (x_t, masked picture, mask) (Flux Fill's), not (x_t, mask, masked)

    def denoiser_input(self, x_in: torch.Tensor) -> torch.Tensor:
        """What the UNet sees at an evaluation: x_in, with the mask and the masked picture beside it where it reads them."""
        if not self.reads_mask:
            return x_in
        return torch.cat([x_in, self.masked, self.mask] if self.mask_last else [x_in, self.mask, self.masked], dim=1)

    def blend(self, sched: Any, latents: torch.Tensor, times: torch.Tensor, i: int) -> torch.Tensor:
        """A blended run's latents after the sampler stepped at position i of `times` (the schedule, on the host):
        the kept part from the picture, noised to position i + 1's level; the UNet's own x_t where it reads the mask."""
        if self.reads_mask:
            return latents
        kept = self.picture
        if i < len(times) - 1:
            kept = noised(sched, self.picture, self.noise, times[i + 1])
        return (1 - self.mask) * kept + self.mask * latents

    def to(self, device: torch.device, dtype: torch.dtype) -> "Inpainting":
        picture = None if self.picture is None else self.picture.to(device, dtype)
        return Inpainting(self.mask.to(device, dtype), self.masked.to(device, dtype), picture,
                          self.noise.to(device, dtype), self.reads_mask, self.mask_last)


def reads_mask(family: Any) -> bool:
    """A denoiser made for inpainting: it reads more channels than it predicts (SD's UNet 9 for 4, SD3's transformer 33
    for 16, Flux Fill's 384 packed features for 64: x_t, the masked picture's latents and the mask)."""
    config = family.denoiser.config
    return int(config.in_channels) > int(config.get("out_channels") or config.in_channels)


def draws_picture(family: Any, strength: float) -> bool:
    """Whether a run encodes the start picture (a draw from its generator): a blended one, or one below strength 1;
    Flux's pipelines always (the family's encodes_start_always)."""
    return not reads_mask(family) or strength != 1.0 or getattr(family, "encodes_start_always", False)


def latent_channels(family: Any) -> int:
    return int(family.pipe.vae.config.latent_channels)


def make(family: Any, picture: Any, mask: Any, height: int, width: int, strength: float,
         generator: torch.Generator) -> Inpainting:
    """A run's Inpainting, drawn from `generator` as the pipeline draws it (the module's docstring says the order)."""
    pipe = family.pipe
    pixels = pipe.image_processor.preprocess(picture, height=height, width=width).to(torch.float32)
    own = reads_mask(family)
    kept = encode_pixels(family, pixels, generator) if draws_picture(family, strength) else None
    if kept is not None:  # laid out as the pipeline's repeat per batch row lays them (the VAE's are channels-last):
        kept = kept.contiguous()  # the blend's x_t takes their strides, and the UNet's kernels follow strides
    size = getattr(family, "latent_size", None)  # Flux's: its latents are packed 2 x 2 (core/families/flux.py)
    shape = (1, latent_channels(family), *(size(height, width) if size is not None else
                                           (height // family.vae_factor, width // family.vae_factor)))
    noise = randn_tensor(shape, generator=generator, device=family.device, dtype=family.dtype)
    condition = pipe.mask_processor.preprocess(mask, height=height, width=width)  # binarized at 0.5, 1 repaints
    masked = encode_pixels(family, pixels * (condition < 0.5), generator)
    return Inpainting(mask_latents(family, condition, shape, own), masked, kept, noise, own, family.name == "flux")


def mask_latents(family: Any, condition: torch.Tensor, shape: tuple, own: bool) -> torch.Tensor:
    """The mask as the denoiser and the blend take it, at the latents' size: nearest-resized, one channel; for Flux
    Fill's transformer each latent pixel's f x f block of the full-size mask as f * f channels (FluxFillPipeline's
    prepare_mask_latents; f: the VAE's factor)."""
    if own and family.name == "flux":
        f, (h, w) = int(family.pipe.vae_scale_factor), shape[2:]
        blocks = condition[:, 0].reshape(1, h, f, w, f).permute(0, 2, 4, 1, 3).reshape(1, f * f, h, w)
        return blocks.to(family.device, family.dtype)
    return torch.nn.functional.interpolate(condition, size=shape[2:]).to(family.device, family.dtype)


def start_latents(state: Inpainting, sched: Any, first: int, strength: float,
                  clean: torch.Tensor | None = None) -> torch.Tensor:
    """The run's first x_t at position `first` of sched.timesteps: pure noise where it starts at strength 1 (no
    picture latents drawn), else the picture's latents noised to that level; `clean`: latents to start from
    instead, noised with the start noise (a decision curve's continuation, core/decision.py)."""
    noise = state.noise
    if clean is not None:
        return noised(sched, clean.to(noise.device, noise.dtype), noise, sched.timesteps[first])
    if strength == 1.0:
        return noise * getattr(sched, "init_noise_sigma", 1.0)
    return noised(sched, state.picture, noise, sched.timesteps[first])


def skip_start_draws(family: Any, shape: tuple, generator: torch.Generator, strength: float) -> None:
    """Advance `generator` past what make() draws (a branch's replay needs the same numbers after it)."""
    if draws_picture(family, strength):
        skip_picture_draw(family, shape, generator)
    randn_tensor(shape, generator=generator, device=family.device, dtype=family.dtype)
    skip_picture_draw(family, shape, generator)


def with_new_noise(state: Inpainting, generator: torch.Generator) -> Inpainting:
    """`state` with start noise drawn anew from `generator`: a decision curve's continuation keeps the run's picture,
    masked picture and mask (its kept part is the run's, not another sample of the VAE's) and noises afresh."""
    noise = state.noise
    return replace(state, noise=randn_tensor(noise.shape, generator=generator, device=noise.device, dtype=noise.dtype))


def state_of(family: Any, traj: Any) -> Inpainting:
    """A trajectory's Inpainting for a branch: the one its run made, or made again from the start picture and the
    mask a loaded run keeps, with its seed (the same draws, so the same numbers)."""
    if traj.inpainting is None:
        p = traj.params
        traj.inpainting = make(family, traj.start_picture, traj.mask, int(p["height"]), int(p["width"]),
                               float(p["strength"]), torch.Generator("cpu").manual_seed(int(p["seed"])))
    return traj.inpainting.to(family.device, family.dtype)
