"""Per-family adapters: how to encode a prompt and call the denoiser of one pipeline family.

The denoising loop (core/run.py) is the same for all families; what differs (text encoders,
extra conditioning, latent layout, what "guidance" means) lives here, one module a family:
sd (the adapter the others subclass), sdxl, sd3, flux, pixart; generic describes pipelines
nbdiffuse only watches; registry picks the adapter for a pipeline (a new family is one more
entry there).

Every adapter works on latents in the (1, C, h, w) layout the VAE decodes: a family whose
denoiser wants another layout (Flux packs 2x2 patches into tokens) converts inside predict(),
so trajectories, previews and branches always see (C, h, w) latents.
"""
from .base import Conditioning
from .flux import FluxFamily
from .generic import GenericPipeline
from .pixart import PixArtFamily
from .registry import (adapter_for, default_guidance, family_for, is_generic, supported_pipelines,
                       takes_step_callback)
from .sd import StableDiffusionFamily
from .sd3 import StableDiffusion3Family
from .sdxl import StableDiffusionXLFamily

__all__ = ["Conditioning", "FluxFamily", "GenericPipeline", "PixArtFamily", "StableDiffusion3Family",
           "StableDiffusionFamily", "StableDiffusionXLFamily", "adapter_for", "default_guidance", "family_for", "is_generic",
           "supported_pipelines", "takes_step_callback"]
