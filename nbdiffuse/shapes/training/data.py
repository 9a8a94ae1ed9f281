"""The training data: a pool of rendered images, their latents, and each step's batch.

Randomness is derived from (seed, stage, step), never from a generator that runs on, so a resumed
run draws the same batches as an unbroken one.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..render import render_pool
from ..text_batches import TextBatches
from .progress import say


def rng(seed: int, stage: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage, step])


def torch_generator(device: torch.device, seed: int, stage: int, step: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng(seed, stage, step).integers(2**62)))
    return generator


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1], what the VAE takes."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def render_images(state: dict, device: torch.device) -> tuple[list, torch.Tensor]:
    """The run's pool: its captions, and its images as a uint8 tensor on `device`."""
    say(f"rendering a pool of {state['pool_size']} images")
    began = time.time()
    captions, images = render_pool(state["pool_size"], seed=state["seed"])
    say(f"pool rendered in {time.time() - began:.1f} s")
    return captions, torch.from_numpy(images).to(device)


def vae_batch(ctx: dict, step: int) -> tuple[torch.Tensor, torch.Generator]:
    """Stage 1's images at `step`, and the generator its latents are sampled with."""
    state, preset, device, pool = ctx["state"], ctx["preset"], ctx["device"], ctx["pool_images"]
    index = torch.from_numpy(rng(state["seed"], 1, step).integers(len(pool), size=preset.vae_batch)).to(device)
    return as_pixels(pool[index]), torch_generator(device, state["seed"], 1, step)


@torch.no_grad()
def encode_pool(ctx: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every pool image (stage 2 samples latents from them)."""
    vae, pool = ctx["vae"], ctx["pool_images"]
    vae.eval()
    means, stds = [], []
    for start in range(0, len(pool), 256):
        images = as_pixels(pool[start : start + 256])
        with ctx["autocast"]():
            posterior = vae.encode(images).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    # Contiguous (the VAE may hand back channels-last): a resumed run reads these from disk in
    # contiguous layout, and the UNet's convolutions round differently for the two layouts.
    return torch.cat(means).contiguous(), torch.cat(stds).contiguous()


def text_batches(ctx: dict, workers: int) -> TextBatches:
    """Stage 2's tokenized captions, made ahead by `workers` processes (0: in this one)."""
    state = ctx["state"]
    began = time.time()
    batches = TextBatches(ctx["pool_captions"], ctx["tokenizer"], ctx["tokenizer_dir"], state["seed"],
                          ctx["preset"].batch, workers=workers, noise=state.get("caption_noise") or 0.0,
                          pair_share=state.get("pair_share") or 0.0)
    batches.prefetch(state["unet_step"])
    say(f"caption batches ready in {time.time() - began:.1f} s ({workers} worker processes)")
    return batches


class UNetBatches:
    """Stage 2's batch at a step: noised latents of pool images, their timesteps and noise, their captions.

    No host-device synchronization per step on a GPU (pinned non-blocking copies in), so the host
    queues the next step while the GPU runs this one."""

    def __init__(self, ctx: dict):
        state, self.device = ctx["state"], ctx["device"]
        self.seed, self.batch, self.text = state["seed"], ctx["preset"].batch, ctx["text_batches"]
        self.means, self.stds = ctx["latent_mean"], ctx["latent_std"]
        self.scaling = ctx["vae"].config.scaling_factor
        self.alphas_cumprod = ctx["alphas_cumprod"]
        self.offset, self.t_min = state.get("offset_noise") or 0.0, state.get("t_min") or 0
        self.pinned = self.device.type == "cuda"

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor.pin_memory().to(self.device, non_blocking=True) if self.pinned else tensor.to(self.device)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, noisy latents, timesteps, noise) of `step`."""
        device, batch = self.device, self.batch
        index, ids = self.text.get(step)
        input_ids, index_t = self._to_device(ids), self._to_device(index)
        generator = torch_generator(device, self.seed, 2, step)
        shape = (batch, *self.means.shape[1:])
        latents = (self.means[index_t] + self.stds[index_t] * torch.randn(shape, generator=generator, device=device)
                   ) * self.scaling
        noise = torch.randn(shape, generator=generator, device=device)
        if self.offset:  # offset noise: a random shift per image and channel, so that x_t's mean says little
            noise = noise + self.offset * torch.randn((batch, shape[1], 1, 1), generator=generator, device=device)
        timesteps = torch.randint(self.t_min, len(self.alphas_cumprod), (batch,), generator=generator, device=device)
        a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        return input_ids, noisy, timesteps, noise
