"""Latent -> RGB: a linear approximation fitted to each VAE, the full VAE, or a tiny AE.

The approx decoder is what makes live previews cheap: a C x 3 matrix and a bias, fitted
once per VAE by least squares against that VAE's own encoder (the same idea as the
hand-made factors in ComfyUI's latent_formats.py and A1111's "Approx cheap", but
derived for any latent format instead of copied from a table).
"""
from __future__ import annotations

import threading
import weakref
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass
class ApproxDecoder:
    """RGB in [0, 1] ~= latents (C, H, W) . weight (C, 3) + bias (3)."""

    weight: np.ndarray
    bias: np.ndarray

    def rgb(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """(C, H, W) latents -> (H, W, 3) uint8."""
        z = latents.detach().float().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents, np.float32)
        if z.ndim == 4:
            z = z[0]
        # tensordot, not einsum: einsum's path planning alone costs more than this product at preview sizes.
        rgb = np.tensordot(z, self.weight, axes=(0, 0)) + self.bias
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def __call__(self, latents: torch.Tensor | np.ndarray) -> Image.Image:
        return Image.fromarray(self.rgb(latents))

    def to_dict(self) -> dict:
        return {"weight": self.weight.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "ApproxDecoder":
        weight = np.asarray(data["weight"], np.float32)
        bias = np.asarray(data["bias"], np.float32)
        if weight.ndim != 2 or weight.shape[1] != 3 or bias.shape != (3,):
            raise ValueError(f"approx decoder must be a (C, 3) weight and a (3,) bias, got {weight.shape} and {bias.shape}")
        return cls(weight, bias)

    @classmethod
    def fit(cls, vae: Any, *, images: int = 32, blocks: int = 4, seed: int = 0) -> "ApproxDecoder":
        """Least-squares fit of latent -> RGB on synthetic color-block images run through `vae`."""
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        side = blocks * factor * 2  # each color block spans 2 x 2 latent pixels
        rng = np.random.default_rng(seed)
        colors = rng.random((images, 3, blocks, blocks), dtype=np.float32)
        colors[: images // 4] = rng.integers(0, 2, (images // 4, 3, blocks, blocks)).astype(np.float32)  # pure hues
        pixels = torch.from_numpy(colors).repeat_interleave(side // blocks, 2).repeat_interleave(side // blocks, 3)
        param = next(vae.parameters())
        with torch.no_grad():
            latents = vae.encode(pixels.to(param.device, param.dtype) * 2 - 1).latent_dist.mean.float().cpu()
        latents = to_pipeline_space(vae, latents)
        target = torch.nn.functional.avg_pool2d(pixels, factor)  # RGB at latent resolution
        z = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).numpy()
        y = target.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
        design = np.concatenate([z, np.ones((len(z), 1), np.float32)], 1)
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        return cls(solution[:-1].astype(np.float32), solution[-1].astype(np.float32))


def to_pipeline_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the scaled latents a pipeline denoises."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def from_pipeline_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return latents / vae.config.scaling_factor + shift


_approx_cache: "weakref.WeakKeyDictionary[Any, ApproxDecoder]" = weakref.WeakKeyDictionary()
_approx_lock = threading.Lock()


def approx_decoder_for(vae: Any) -> ApproxDecoder:
    """The fitted approx decoder of `vae`, fitted on first use and cached per VAE object."""
    with _approx_lock:
        decoder = _approx_cache.get(vae)
        if decoder is None:
            decoder = ApproxDecoder.fit(vae)
            _approx_cache[vae] = decoder
        return decoder


def to_pil(images: torch.Tensor) -> Image.Image:
    """A (1, 3, H, W) or (3, H, W) tensor in [-1, 1] -> PIL image."""
    if images.ndim == 4:
        images = images[0]
    array = ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


_fp32_copies: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def full_decode(vae: Any, latents: torch.Tensor) -> Image.Image:
    """Decode (C, H, W) pipeline-space latents with the VAE (or a diffusers AutoencoderTiny)."""
    param = next(vae.parameters())
    z = latents.unsqueeze(0) if latents.ndim == 3 else latents
    z = from_pipeline_space(vae, z.to(param.device, torch.float32))
    with torch.no_grad():
        # SDXL's VAE overflows in fp16 (config force_upcast): decode with an fp32 copy,
        # never by converting the shared model, which another thread may be using.
        if param.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            with _approx_lock:
                copy = _fp32_copies.get(vae)
                if copy is None:
                    copy = _fp32_copies[vae] = deepcopy(vae).float()
            image = copy.decode(z, return_dict=False)[0]
        else:
            image = vae.decode(z.to(param.dtype), return_dict=False)[0]
    return to_pil(image)
