"""Tiny seeded builders for the pipeline matrix, continued from builders_more.py (each module stays under 450
lines): NucleusMoEImage, BriaFibo, BriaFibo2, Ideogram4, HunyuanImage and GlmImage."""
from __future__ import annotations

import torch

from nbdiffuse import testing

from builders import _quiet
from builders_more import CHAT, QWEN_SPECIAL, _chat_tokenizer, _flux2_vae, _qwen25_vl, _text_processor


def _qwen3vl_encoder(tokenizer, layers: int):
    """A Qwen 3-VL model (text and vision towers, hidden size 16) with random weights."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig(text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": layers,
                                        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
                                        "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                                        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default",
                                                         "type": "default"}},
                           vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                                          "out_hidden_size": 16},
                           image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
                           video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
                           vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
                           vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"))
    torch.manual_seed(0)
    return Qwen3VLForConditionalGeneration(config).eval()


def nucleus_moe():
    """NucleusMoEImagePipeline: a Qwen 3-VL encoder (its 8th-last hidden state) prompted through a chat template, a
    DiT (experts off) on 2 x 2-packed Qwen-Image VAE latents (kept packed: no previews)."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, NucleusMoEImagePipeline,
                           NucleusMoEImageTransformer2DModel)

    tokenizer = _chat_tokenizer(max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    torch.manual_seed(0)
    transformer = NucleusMoEImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=1,
                                                    attention_head_dim=16, num_attention_heads=2,
                                                    joint_attention_dim=16, axes_dims_rope=(8, 4, 4),
                                                    moe_enabled=False, capacity_factors=[8.0]).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4).eval()
    encoder = _qwen3vl_encoder(tokenizer, 8)
    return _quiet(NucleusMoEImagePipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                          vae=vae, text_encoder=encoder, processor=_text_processor(tokenizer)))


def _wan22_vae():
    """A Wan 2.2-style AutoencoderKLWan (2 x 2 patches, 16x down), the smallest widths that build."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=8, decoder_base_dim=8, num_res_blocks=1, out_channels=12, patch_size=2,
                            scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True],
                            z_dim=16, is_residual=True, in_channels=12).eval()


def bria_fibo():
    """BriaFiboPipeline: a SmolLM3 encoder (its last two hidden states, and every layer's for the DiT), latents of
    a Wan 2.2 VAE (16x down) packed one position a token (its _unpack_latents takes 2 x 2 patches, which they are
    not: nbdiffuse keeps them packed, without previews). Its vocabulary is SmolLM3's own: the pipeline encodes an empty
    prompt as the id 128000."""
    from diffusers import BriaFiboPipeline, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.transformer_bria_fibo import BriaFiboTransformer2DModel
    from transformers.models.smollm3.modeling_smollm3 import SmolLM3Config, SmolLM3ForCausalLM

    tokenizer = testing.tiny_t5_tokenizer(max_length=512)
    torch.manual_seed(0)
    transformer = BriaFiboTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                             attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                             text_encoder_dim=16, pooled_projection_dim=None,
                                             axes_dims_rope=[0, 4, 4]).eval()
    torch.manual_seed(0)
    encoder = SmolLM3ForCausalLM(SmolLM3Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, num_key_value_heads=1,
                                               pad_token_id=tokenizer.pad_token_id)).eval()
    return _quiet(BriaFiboPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                   vae=_wan22_vae(), text_encoder=encoder, tokenizer=tokenizer))


def bria_fibo2():
    """BriaFibo2Pipeline: a Qwen 3-VL encoder (36 layers: it reads six bundles of three up to layer 35), a DiT with
    gist tokens on Flux 2 VAE latents, batch-normed the Flux 2 way (a VAE without scaling_factor: no previews)."""
    from diffusers import BriaFibo2Pipeline, BriaFibo2Transformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = _chat_tokenizer(max_length=4096)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    torch.manual_seed(0)
    transformer = BriaFibo2Transformer2DModel(in_channels=4, patch_size=2, dim=32, n_layers=1, n_refiner_layers=1,
                                              n_heads=2, cap_feat_dim=48, injection_layer_ids=(0,),
                                              perceiver_num_layers=1, min_num_gist_tokens=4, max_num_gist_tokens=8,
                                              gist_step=4, gist_min_text_len=4, gist_max_text_len=16,
                                              axes_dims=(4, 6, 6), axes_lens=(16, 16, 16)).eval()
    return _quiet(BriaFibo2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux2_vae(),
                                    text_encoder=_qwen3vl_encoder(tokenizer, 36),
                                    processor=_text_processor(tokenizer)))


def ideogram4():
    """Ideogram4Pipeline: a Qwen 3-VL text model (13 layers tapped up to 35), a conditional and an unconditional
    DiT on 2 x 2-patchified, batch-normed Flux 2 VAE latents. A run with guidance_scale needs
    guidance_schedule=None (its default, a 48-step schedule, refuses both)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Ideogram4Pipeline, Ideogram4Transformer2DModel
    from diffusers.pipelines.ideogram4.pipeline_ideogram4 import QWEN3_VL_ACTIVATION_LAYERS
    from transformers import Qwen3VLConfig, Qwen3VLModel

    tokenizer = _chat_tokenizer(max_length=2048)
    parts = dict(in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=2, intermediate_size=32,
                 adaln_dim=16, llm_features_dim=len(QWEN3_VL_ACTIVATION_LAYERS) * 8, rope_theta=10_000,
                 mrope_section=(2, 1, 1), norm_eps=1e-5)
    torch.manual_seed(0)
    transformer = Ideogram4Transformer2DModel(**parts).eval()
    torch.manual_seed(1)
    unconditional = Ideogram4Transformer2DModel(**parts).eval()
    config = Qwen3VLConfig(text_config={"hidden_size": 8, "num_hidden_layers": max(QWEN3_VL_ACTIVATION_LAYERS) + 1,
                                        "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16,
                                        "head_dim": 8, "vocab_size": len(tokenizer), "max_position_embeddings": 256,
                                        "pad_token_id": tokenizer.pad_token_id},
                           vision_config={"hidden_size": 8, "depth": 1, "num_heads": 2, "intermediate_size": 16,
                                          "out_hidden_size": 8, "patch_size": 14})
    torch.manual_seed(0)
    encoder = Qwen3VLModel(config).eval()
    return _quiet(Ideogram4Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux2_vae(), text_encoder=encoder,
                                    tokenizer=tokenizer, transformer=transformer,
                                    unconditional_transformer=unconditional))


def hunyuan_image():
    """HunyuanImagePipeline (2.1): a Qwen 2.5-VL and a ByT5 (glyph) encoder, a DiT guided by its own guiders
    (AdaptiveProjectedMixGuidance: no guidance_scale in its __call__), its own 8x VAE."""
    from diffusers import (AdaptiveProjectedMixGuidance, AutoencoderKLHunyuanImage, FlowMatchEulerDiscreteScheduler,
                           HunyuanImagePipeline, HunyuanImageTransformer2DModel)
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tokenizer = testing.tiny_t5_tokenizer(max_length=2048)
    byt5 = ByT5Tokenizer()
    torch.manual_seed(0)
    transformer = HunyuanImageTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                                 attention_head_dim=8, num_layers=1, num_single_layers=1,
                                                 num_refiner_layers=1, patch_size=(1, 1), guidance_embeds=False,
                                                 text_embed_dim=32, text_embed_2_dim=32, rope_axes_dim=(4, 4)).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanImage(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32,) * 4,
                                    layers_per_block=1, scaling_factor=0.476986, spatial_compression_ratio=8,
                                    sample_size=32).eval()
    torch.manual_seed(0)
    glyph = T5EncoderModel(T5Config(d_model=32, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                                    relative_attention_num_buckets=8, relative_attention_max_distance=32,
                                    vocab_size=len(byt5), feed_forward_proj="gated-gelu", dense_act_fn="gelu_new",
                                    is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False)).eval()
    return _quiet(HunyuanImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), vae=vae, text_encoder=_qwen25_vl(tokenizer),
        tokenizer=tokenizer, text_encoder_2=glyph, tokenizer_2=byt5, transformer=transformer,
        guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=2),
        ocr_guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=3)))


GLM_SPECIAL = {"image_token": "<|image|>", "grid_bos_token": "<sop>", "grid_eos_token": "<eop>",
               "bos_token": "<|dit_token_16384|>", "eos_token": "<|dit_token_16385|>"}


def glm_image():
    """GlmImagePipeline: an autoregressive GLM-Image model draws prior image tokens (a large and a small grid), then
    a DiT denoises with them and a T5 (glyph) encoder; its processor is GlmImageProcessor over the tiny tokenizer
    with the GLM-Image special tokens, and the image processor's PIL backend."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, GlmImagePipeline, GlmImageTransformer2DModel
    from transformers import GlmImageConfig, GlmImageForConditionalGeneration, GlmImageProcessor
    from transformers.models.glm_image.image_processing_pil_glm_image import GlmImageImageProcessorPil

    t5 = testing.tiny_t5_tokenizer(max_length=512)
    tokenizer = _chat_tokenizer(max_length=2048)
    tokenizer.add_special_tokens({"additional_special_tokens": list(GLM_SPECIAL.values())})
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in GLM_SPECIAL.items()}
    for name, token in GLM_SPECIAL.items():
        if name != "eos_token":
            setattr(tokenizer, name, token)
    processor = GlmImageProcessor(image_processor=GlmImageImageProcessorPil(), tokenizer=tokenizer, chat_template=CHAT)
    config = GlmImageConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512,
                     "vision_vocab_size": 128, "rope_parameters": {"mrope_section": (4, 2, 2)},
                     "pad_token_id": tokenizer.pad_token_id, "eos_token_id": ids["eos_token"]},
        vision_config={"depth": 1, "hidden_size": 32, "num_heads": 2, "image_size": 32, "patch_size": 8,
                       "intermediate_size": 32},
        vq_config={"embed_dim": 32, "num_embeddings": 128, "latent_channels": 32},
        image_token_id=ids["image_token"], image_start_token_id=ids["bos_token"], image_end_token_id=ids["eos_token"])
    torch.manual_seed(0)
    prior = GlmImageForConditionalGeneration(config).eval()
    torch.manual_seed(0)
    transformer = GlmImageTransformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                             attention_head_dim=8, num_attention_heads=2, text_embed_dim=32,
                                             time_embed_dim=16, condition_dim=8,
                                             prior_vq_quantizer_codebook_size=128).eval()
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,) * 4, in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        latent_channels=4, norm_num_groups=4, sample_size=32, latents_mean=[0.0] * 4,
                        latents_std=[1.0] * 4).eval()
    return _quiet(GlmImagePipeline(tokenizer=t5, processor=processor, text_encoder=testing._t5_encoder(t5, 32),
                                   vision_language_encoder=prior, vae=vae, transformer=transformer,
                                   scheduler=FlowMatchEulerDiscreteScheduler()))
