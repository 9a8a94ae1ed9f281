"""Tiny seeded builders of the ControlNet pipelines the matrix runs on the generic path (trace(control_image=...)
hands the picture to pipe(...): core/generic_control.py). Each ControlNet's zero-initialised output layers get
seeded weights, so that the control picture changes what the model predicts."""
from __future__ import annotations

import torch

from nbdiffuse import testing

import builders


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


def _two_layers(base):
    """`base()`'s pipeline with a transformer of two layers (seeded): a ControlNet's block adds to the first
    layer only where a later one follows (SD3's last block reads no context; Sana's first is skipped)."""
    def build():
        pipe = base()
        config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
        torch.manual_seed(0)
        pipe.transformer = type(pipe.transformer)(**dict(config, num_layers=2)).eval()
        pipe.register_modules(transformer=pipe.transformer)
        return pipe
    return build


def sd3_controlnet(nets: int = 1):
    """StableDiffusion3ControlNetPipeline (nets > 1: that many ControlNets, seeds 0, 1, ..., in an
    SD3MultiControlNetModel)."""
    from diffusers import SD3MultiControlNetModel

    base = _two_layers(builders.sd3)
    made = [sd3_net(base(), seed) for seed in range(nets)]
    return _with_controlnet("StableDiffusion3ControlNetPipeline", base,
                            made[0] if nets == 1 else SD3MultiControlNetModel(made))


def sd3_net(pipe, seed: int = 0):
    """A one-layer SD3ControlNetModel for `pipe`'s transformer, its zero-initialised layers seeded."""
    from diffusers import SD3ControlNetModel

    config = pipe.transformer.config
    torch.manual_seed(seed)
    net = SD3ControlNetModel(**{k: config[k] for k in ("sample_size", "patch_size", "in_channels", "attention_head_dim",
                                                        "num_attention_heads", "joint_attention_dim",
                                                        "caption_projection_dim", "pooled_projection_dim",
                                                        "out_channels", "pos_embed_max_size")}, num_layers=1)
    testing.seeded_weights([*net.controlnet_blocks, net.pos_embed_input.proj], seed)
    return net.eval()


def flux_controlnet():
    return testing.tiny_flux_controlnet_pipeline()


def sdxl_controlnet_pag():
    net = testing.tiny_controlnet(builders.sdxl())
    return _with_controlnet("StableDiffusionXLControlNetPAGPipeline", builders.sdxl, net, pag_applied_layers="mid")


def sdxl_controlnet_pag_img2img():
    net = testing.tiny_controlnet(builders.sdxl())
    return _with_controlnet("StableDiffusionXLControlNetPAGImg2ImgPipeline", builders.sdxl, net,
                            pag_applied_layers="mid")


def flux_controlnet_img2img():
    pipe = builders._img2img("FluxControlNetImg2ImgPipeline", testing.tiny_flux_controlnet_pipeline)
    pipe.default_sample_size = 16
    return pipe


def qwenimage_controlnet():
    from diffusers import QwenImageControlNetModel

    base = builders.qwenimage()
    config = base.transformer.config
    torch.manual_seed(0)
    net = QwenImageControlNetModel.from_transformer(base.transformer, num_layers=1,
                                                    attention_head_dim=config.attention_head_dim,
                                                    num_attention_heads=config.num_attention_heads)
    testing.seeded_weights([*net.controlnet_blocks, net.controlnet_x_embedder])
    return _with_controlnet("QwenImageControlNetPipeline", builders.qwenimage, net.eval())


def sana_controlnet():
    from diffusers import SanaControlNetModel

    base = _two_layers(builders.sana)
    config = base().transformer.config
    torch.manual_seed(0)
    keys = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_cross_attention_heads",
            "cross_attention_head_dim", "cross_attention_dim", "caption_channels", "sample_size", "patch_size")
    net = SanaControlNetModel(**{k: config[k] for k in keys}, num_layers=1)
    testing.seeded_weights([*net.controlnet_blocks, net.input_block])
    return _with_controlnet("SanaControlNetPipeline", base, net.eval())


def cogview4_control():
    """CogView4ControlPipeline: its transformer reads the control picture's latents beside the noisy ones (twice
    the input channels); it samples them from torch's global generator."""
    from diffusers import CogView4ControlPipeline, CogView4Transformer2DModel

    base = builders.cogview4()
    config = {k: v for k, v in base.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    transformer = CogView4Transformer2DModel(**dict(config, in_channels=2 * config["in_channels"])).eval()
    pipe = CogView4ControlPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                                   transformer=transformer, scheduler=base.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _union_net(base):
    """A tiny ControlNetUnionModel for `base`'s SDXL UNet (its control types' transformer at the UNet's first
    width), its zero-initialised output layers seeded."""
    from diffusers import ControlNetUnionModel

    torch.manual_seed(0)
    shaped = ControlNetUnionModel.from_unet(base.unet, conditioning_embedding_out_channels=(8, 16, 32, 64)[
        :int(base.vae_scale_factor).bit_length()])
    width = base.unet.config.block_out_channels[0]
    config = {k: v for k, v in shaped.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    net = ControlNetUnionModel(**dict(config, num_trans_channel=width, num_proj_channel=width, num_trans_head=2))
    testing.seeded_weights([*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out])
    return net.eval()


def sdxl_controlnet_union():
    return _with_controlnet("StableDiffusionXLControlNetUnionPipeline", builders.sdxl, _union_net(builders.sdxl()))


def sdxl_controlnet_union_img2img():
    return _with_controlnet("StableDiffusionXLControlNetUnionImg2ImgPipeline", builders.sdxl,
                            _union_net(builders.sdxl()))


def _flux_control(cls_name):
    """FluxControlPipeline and its image-to-image sibling: Flux's transformer reads the control picture's latents
    beside the noisy ones (twice the input channels), as FLUX.1 Canny and Depth do."""
    import diffusers

    base = testing.tiny_flux_pipeline()
    config = {k: v for k, v in base.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    transformer = type(base.transformer)(**dict(config, in_channels=2 * config["in_channels"],
                                                out_channels=config["in_channels"])).eval()
    parts = {k: v for k, v in base.components.items() if k not in ("transformer", "image_encoder",
                                                                     "feature_extractor")}
    pipe = getattr(diffusers, cls_name)(transformer=transformer, **parts)
    pipe.set_progress_bar_config(disable=True)
    pipe.default_sample_size = 16
    return pipe


def flux_control():
    return _flux_control("FluxControlPipeline")


def flux_control_img2img():
    return _flux_control("FluxControlImg2ImgPipeline")


def _controlnet_xs(cls_name, base_builder):
    """ControlNet-XS (SD's and SDXL's): a small control network interleaved with the UNet, which diffusers
    builds for a UNet of two layers per block; its zero-initialised connections seeded so that it acts."""
    import diffusers
    from diffusers import ControlNetXSAdapter

    base = base_builder()
    config = {k: v for k, v in base.unet.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    unet = type(base.unet)(**dict(config, layers_per_block=2)).eval()
    adapter = ControlNetXSAdapter.from_unet(unet, size_ratio=0.5, learn_time_embedding=True,
                                            conditioning_embedding_out_channels=(8, 16))
    testing.seeded_weights([m for m in adapter.modules() if isinstance(m, torch.nn.Conv2d) and not m.weight.any()])
    parts = {k: v for k, v in base.components.items() if k not in ("unet", "image_encoder", "safety_checker",
                                                                     "feature_extractor")}
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if "safety_checker" in base.components else {}
    pipe = getattr(diffusers, cls_name)(unet=unet, controlnet=adapter.eval(), **parts, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd_controlnet_xs():
    return _controlnet_xs("StableDiffusionControlNetXSPipeline", builders.sd)


def sdxl_controlnet_xs():
    return _controlnet_xs("StableDiffusionXLControlNetXSPipeline", builders.sdxl)


def hunyuan_dit_controlnet():
    """HunyuanDiTControlNetPipeline: a DiT of four layers (its ControlNet adds to the skip connections of the
    layers past the middle, one per layer before it but the last), the ControlNet's zero layers seeded."""
    from diffusers import HunyuanDiT2DControlNetModel, HunyuanDiTControlNetPipeline

    base = builders.hunyuan_dit()
    config = {k: v for k, v in base.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    transformer = type(base.transformer)(**dict(config, num_layers=4)).eval()
    torch.manual_seed(0)
    net = HunyuanDiT2DControlNetModel(**{k: config[k] for k in (
        "num_attention_heads", "attention_head_dim", "in_channels", "patch_size", "sample_size", "hidden_size",
        "mlp_ratio", "cross_attention_dim", "cross_attention_dim_t5", "pooled_projection_dim", "text_len",
        "text_len_t5")}, transformer_num_layers=4)
    testing.seeded_weights([*net.controlnet_blocks, net.input_block])
    parts = {k: v for k, v in base.components.items() if k not in ("transformer", "image_encoder")}
    pipe = HunyuanDiTControlNetPipeline(transformer=transformer, controlnet=net.eval(), **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def zimage_controlnet():
    """ZImageControlNetPipeline: a ZImageControlNetModel of one control layer, which borrows the transformer's
    embedders and refiners (from_transformer); its zero-initialised projections seeded."""
    from diffusers import ZImageControlNetModel, ZImageControlNetPipeline

    base = builders.zimage()
    config = base.transformer.config
    torch.manual_seed(0)
    net = ZImageControlNetModel(control_layers_places=[0], control_in_dim=config.in_channels, dim=config.dim,
                                n_refiner_layers=config.n_refiner_layers, n_heads=config.n_heads,
                                n_kv_heads=config.n_kv_heads, all_patch_size=tuple(config.all_patch_size),
                                all_f_patch_size=tuple(config.all_f_patch_size))
    testing.seeded_weights([m for m in net.modules() if isinstance(m, torch.nn.Linear) and not m.weight.any()])
    net = ZImageControlNetModel.from_transformer(net, base.transformer)
    parts = {k: v for k, v in base.components.items()}
    pipe = ZImageControlNetPipeline(controlnet=net.eval(), **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe
