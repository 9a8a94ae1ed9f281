"""Tiny inpainting pipelines (trace(image=..., mask_image=...), core/inpaint.py): most share a text-to-image
builder's parts, whose denoiser the pipeline blends (the kept part of x_t put back from the picture each step);
SD3's wants a 16-channel latent space, and Flux Fill's transformer reads the masked picture and the mask beside
x_t."""
from __future__ import annotations

import inspect

import torch

import builders
import builders_control
import builders_more
from builders import _img2img, _quiet


def sd_inpaint():
    return _img2img("StableDiffusionInpaintPipeline", builders.sd)


def sdxl_inpaint():
    return _img2img("StableDiffusionXLInpaintPipeline", builders.sdxl)


def flux_inpaint():
    return _img2img("FluxInpaintPipeline", builders.flux)


def sd_pag_inpaint():
    return _img2img("StableDiffusionPAGInpaintPipeline", builders.sd_pag)


def sdxl_pag_inpaint():
    return _img2img("StableDiffusionXLPAGInpaintPipeline", builders.sdxl_pag)


def qwenimage_inpaint():
    return _img2img("QwenImageInpaintPipeline", builders.qwenimage)


def zimage_inpaint():
    return _img2img("ZImageInpaintPipeline", builders.zimage)


def flux2_klein_inpaint():
    return _img2img("Flux2KleinInpaintPipeline", builders_more.flux2_klein)


def sd_controlnet_inpaint():
    return _img2img("StableDiffusionControlNetInpaintPipeline", builders_control.sd_controlnet)


def sdxl_controlnet_inpaint():
    return _img2img("StableDiffusionXLControlNetInpaintPipeline", builders_control.sdxl_controlnet)


def sd_controlnet_pag_inpaint():
    return _img2img("StableDiffusionControlNetPAGInpaintPipeline", builders_control.sd_controlnet_pag)


def sdxl_controlnet_union_inpaint():
    return _img2img("StableDiffusionXLControlNetUnionInpaintPipeline", builders_control.sdxl_controlnet_union)


def flux_controlnet_inpaint():
    return _img2img("FluxControlNetInpaintPipeline", builders_control.flux_controlnet)


def flux_control_inpaint():
    return _img2img("FluxControlInpaintPipeline", builders_control.flux_control)


def sd3_inpaint():
    """StableDiffusion3InpaintPipeline takes a transformer of 16 (or 33) input channels, as SD3's latent space has."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3InpaintPipeline

    parts = builders.sd3().components
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config({**parts["vae"].config, "latent_channels": 16})
    transformer = SD3Transformer2DModel.from_config({**parts["transformer"].config, "in_channels": 16,
                                                     "out_channels": 16})
    return _quiet(StableDiffusion3InpaintPipeline(**{**parts, "vae": vae, "transformer": transformer}))


def flux_fill():
    """FluxFillPipeline: the tiny Flux's parts with a transformer that reads x_t's 64 packed channels, the masked
    picture's 64 and the mask's 16 (its 2 x 2 VAE factor, packed), and predicts 64."""
    from diffusers import FluxFillPipeline, FluxTransformer2DModel

    parts = builders.flux().components
    config = {k: v for k, v in parts["transformer"].config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(**{**config, "in_channels": 144, "out_channels": 64})
    accepted = inspect.signature(FluxFillPipeline.__init__).parameters
    return _quiet(FluxFillPipeline(**{k: v for k, v in {**parts, "transformer": transformer}.items() if k in accepted}))
