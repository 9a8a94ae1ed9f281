"""Tiny real pipelines for tests, benchmarks and demos: random weights, seeded, built offline.

Like diffusers' own dummy components, but with a tokenizer made here (a character-level
CLIP vocabulary) so that nothing is fetched from a hub.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def _byte_chars() -> list[str]:
    """The printable stand-ins that byte-level BPE (CLIP, GPT-2) uses for the 256 byte values."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_tokenizer_files(folder: str | Path, max_length: int = 77) -> Path:
    """Write vocab.json + merges.txt of a character-level CLIP tokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>"] + _byte_chars() + [c + "</w>" for c in _byte_chars()]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length}), encoding="utf-8")
    return folder


def tiny_tokenizer(max_length: int = 77):
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tiny_tokenizer_files(tmp, max_length)
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)


def _text_encoder(tokenizer, hidden: int, projection: int | None = None, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, projection_dim=projection or hidden)
    torch.manual_seed(seed)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return model.eval()


def _vae(seed: int = 0, **config):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                         norm_num_groups=8, latent_channels=4, sample_size=32, **config).eval()


def tiny_sd_pipeline(prediction_type: str = "epsilon", seed: int = 0, sample_size: int = 8,
                     channels: tuple[int, int] = (32, 64), layers: int = 1):
    """A StableDiffusionPipeline with random weights: 8x8x4 latents, 16x16 images, an Euler scheduler.

    Larger `sample_size` / `channels` / `layers` give a model with realistic compute per step
    (benchmarks), e.g. sample_size=16, channels=(64, 128), layers=2 is about the embedded model's size.
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=layers,
                                block_out_channels=channels, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=16).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       prediction_type=prediction_type, timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=_vae(seed), text_encoder=_text_encoder(tokenizer, 32, seed=seed),
                                   tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(seed: int = 0, sample_size: int = 8):
    """A StableDiffusionXLPipeline with random weights: two text encoders, size conditioning."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
                                attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=8 * 6 + 32, norm_num_groups=16).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=_vae(seed), text_encoder=_text_encoder(tokenizer, 32, seed=seed),
                                     text_encoder_2=_text_encoder(tokenizer, 32, projection=32, seed=seed + 1),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_pipeline(seed: int = 0, sample_size: int = 8):
    """A StableDiffusion3Pipeline with random weights (flow matching, MMDiT, two CLIP encoders, no T5)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=sample_size, patch_size=1, in_channels=4, out_channels=4,
                                        num_layers=1, attention_head_dim=8, num_attention_heads=4,
                                        caption_projection_dim=32, joint_attention_dim=64,
                                        pooled_projection_dim=64).eval()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(seed, scaling_factor=1.5, shift_factor=0.1),
        text_encoder=_text_encoder(tokenizer, 32, projection=32, seed=seed), tokenizer=tokenizer,
        text_encoder_2=_text_encoder(tokenizer, 32, projection=32, seed=seed + 1), tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
