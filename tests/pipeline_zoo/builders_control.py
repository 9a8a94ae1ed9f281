"""Tiny seeded builders of the ControlNet pipelines the matrix runs on the generic path (trace(control_image=...)
hands the picture to pipe(...): core/generic_control.py). Each ControlNet's zero-initialised output layers get
seeded weights, so that the control picture changes what the model predicts."""
from __future__ import annotations

import torch

from nbdiffuse import testing

import builders


def _seeded(layers, seed: int = 0):
    """Give zero-initialised projections seeded weights (a ControlNet starts as a no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.1)
    return layers


def _with_controlnet(cls_name, base, net, **options):
    pipe = builders._img2img(cls_name, base, controlnet=net, **options)
    return pipe


def sd_controlnet():
    return testing.tiny_controlnet_pipeline()


def sdxl_controlnet():
    return testing.tiny_controlnet_pipeline(xl=True)


def sd_controlnet_img2img():
    net = testing.tiny_controlnet(builders.sd())
    return _with_controlnet("StableDiffusionControlNetImg2ImgPipeline", builders.sd, net, requires_safety_checker=False)


def sdxl_controlnet_img2img():
    net = testing.tiny_controlnet(builders.sdxl())
    return _with_controlnet("StableDiffusionXLControlNetImg2ImgPipeline", builders.sdxl, net)


def sd_controlnet_pag():
    # its `image` is the control picture (it has no start picture)
    net = testing.tiny_controlnet(builders.sd())
    return _with_controlnet("StableDiffusionControlNetPAGPipeline", builders.sd, net, requires_safety_checker=False,
                            pag_applied_layers="mid")


def sd3_controlnet():
    from diffusers import SD3ControlNetModel

    base = builders.sd3()
    config = {k: v for k, v in base.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    net = SD3ControlNetModel(**{k: config[k] for k in ("sample_size", "patch_size", "in_channels", "attention_head_dim",
                                                        "num_attention_heads", "joint_attention_dim",
                                                        "caption_projection_dim", "pooled_projection_dim",
                                                        "out_channels", "pos_embed_max_size")}, num_layers=1)
    _seeded([*net.controlnet_blocks, net.pos_embed_input.proj])
    return _with_controlnet("StableDiffusion3ControlNetPipeline", builders.sd3, net.eval())


def flux_controlnet():
    return testing.tiny_flux_controlnet_pipeline()
