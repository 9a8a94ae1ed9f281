"""Tiny seeded builders for the pipeline matrix, continued from builders_more2.py (each module stays under 450
lines): PRX and PRXPixel (their prompt cleaning needs ftfy, a dependency of the dev extra)."""
from __future__ import annotations

import warnings

import torch

from nbdiffuse import testing

from builders import _quiet, _vae8


def _t5gemma_encoder(tokenizer, hidden: int = 16):
    """A T5Gemma encoder (one layer, hidden size 16) with random weights: PRX reads its last hidden state."""
    from transformers import T5GemmaConfig
    from transformers.models.t5gemma.modeling_t5gemma import T5GemmaEncoder

    module = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
                  pad_token_id=tokenizer.pad_token_id, layer_types=["full_attention"])
    config = T5GemmaConfig(encoder=module, decoder=module, vocab_size=len(tokenizer))  # the encoder's dropouts
    torch.manual_seed(0)
    return T5GemmaEncoder(config.encoder).eval()


def _prx_transformer(in_channels: int, **config):
    from diffusers import PRXTransformer2DModel

    torch.manual_seed(0)
    return PRXTransformer2DModel(in_channels=in_channels, patch_size=2, context_in_dim=16, hidden_size=16,
                                 mlp_ratio=2.0, num_heads=2, depth=1, axes_dim=[4, 4], **config).eval()


def prx():
    """PRXPipeline: a T5Gemma encoder, a PRX DiT (2 x 2 patches) on the latents of an AutoencoderKL 8x down."""
    from diffusers import FlowMatchEulerDiscreteScheduler, PRXPipeline

    tokenizer = testing.tiny_t5_tokenizer(max_length=64)
    parts = dict(transformer=_prx_transformer(4), scheduler=FlowMatchEulerDiscreteScheduler(),
                 text_encoder=_t5gemma_encoder(tokenizer), tokenizer=tokenizer, vae=_vae8())
    with warnings.catch_warnings():  # diffusers' own: PRXPipeline still mixes in the deprecated LoraLoaderMixin
        warnings.filterwarnings("ignore", "`LoraLoaderMixin` is deprecated", FutureWarning)
        return _quiet(PRXPipeline(**parts, default_sample_size=512))


def prx_pixel():
    """PRXPixelPipeline: a PRX DiT (2 x 2 patches, through a bottleneck) on RGB pixels, no VAE (its steps are the
    picture in [-1, 1]: nbdiffuse has no decoder for them), a T5Gemma encoder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, PRXPixelPipeline

    tokenizer = testing.tiny_t5_tokenizer(max_length=64)
    return _quiet(PRXPixelPipeline(transformer=_prx_transformer(3, bottleneck_size=8),
                                   scheduler=FlowMatchEulerDiscreteScheduler(),
                                   text_encoder=_t5gemma_encoder(tokenizer), tokenizer=tokenizer,
                                   prompt_max_tokens=64))
