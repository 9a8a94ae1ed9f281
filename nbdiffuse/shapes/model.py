"""The tiny components of the shapes model, built from a preset.

Sizes are chosen so the whole pipeline ships in <= 25 MB of fp32 safetensors and runs on a
laptop CPU at interactive speed; "gpu" is the shipped model (meant for a GPU, trained in resumable
pieces), "cpu" a smaller one that a 2-core CPU trains end to end in minutes (low quality).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

# Noise schedule shared by training (noising) and sampling (the Euler scheduler saved with the
# model). Stable Diffusion's scaled-linear betas; "trailing" spacing makes the first sampling step
# start at t=999, the most noisy step training saw, rather than SD's default t=951.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="trailing",
    steps_offset=1,  # unused by "trailing"; StableDiffusionPipeline rewrites any other value with a warning
)


@dataclasses.dataclass(frozen=True)
class Preset:
    """Architecture and training budget. Steps are optimizer steps of each stage."""

    name: str
    # VAE: one down block per entry; all but the last downsample, so 3 entries = 4x (64 -> 16).
    vae_channels: tuple[int, ...]
    vae_layers: int
    # CLIP text encoder.
    text_width: int
    text_layers: int
    text_heads: int
    # UNet on 4x16x16 latents: levels at 16x16, 8x8, 4x4.
    unet_channels: tuple[int, ...]
    unet_layers: int
    unet_heads: int
    # Training budget.
    vae_steps: int
    vae_batch: int
    vae_lr: float
    unet_steps: int
    batch: int
    lr: float
    warmup: int
    pool_size: int  # images rendered once and reused (see render.render_pool)
    ema_decay: float
    eval_samples: int  # prompts generated and scored with the evaluator at the end


PRESETS: dict[str, Preset] = {
    "gpu": Preset(
        name="gpu",
        vae_channels=(32, 48, 64),
        vae_layers=1,
        text_width=128,
        text_layers=3,
        text_heads=4,
        unet_channels=(64, 96, 96),
        unet_layers=1,
        unet_heads=4,
        # A model this small is launch-bound on a GPU: a batch of 1024 costs about what 128 does,
        # so the batches are large and the step count is a cap (--unet-minutes fits it to a budget).
        vae_steps=3000,
        vae_batch=128,
        vae_lr=5e-4,
        unet_steps=60000,
        batch=1024,
        lr=6e-4,
        warmup=500,
        pool_size=200000,
        ema_decay=0.9995,
        eval_samples=200,
    ),
    "cpu": Preset(
        name="cpu",
        vae_channels=(16, 32, 32),
        vae_layers=1,
        text_width=64,
        text_layers=2,
        text_heads=2,
        unet_channels=(32, 64, 64),
        unet_layers=1,
        unet_heads=2,
        # About 7 minutes on 2 slow CPU cores (0.6 s per VAE step, 0.8 s per UNet step): enough
        # to prove the whole path; the images are blobs of roughly the right color and place.
        vae_steps=200,
        vae_batch=16,
        vae_lr=1e-3,
        unet_steps=250,
        batch=32,
        lr=1e-3,
        warmup=50,
        pool_size=2000,
        ema_decay=0.995,
        eval_samples=16,
    ),
}
# The cpu architecture with a budget of about 70 minutes on one slow core: the model shipped
# until the first GPU run of the "gpu" preset (kept to reproduce it).
PRESETS["cpu-long"] = dataclasses.replace(PRESETS["cpu"], name="cpu-long", vae_steps=1200, unet_steps=4500,
                                          warmup=100, pool_size=8000, ema_decay=0.999, eval_samples=48)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not a preset; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]


def _groups(channels: tuple[int, ...]) -> int:
    """The largest GroupNorm group count (<= 32) that divides every channel count."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))


def build_vae(preset: Preset):
    from diffusers import AutoencoderKL

    n = len(preset.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=preset.vae_channels,
        layers_per_block=preset.vae_layers,
        latent_channels=4,
        norm_num_groups=_groups(preset.vae_channels),
        sample_size=64,
        # Plain shapes need no global attention to be reconstructed; leaving it out halves decode time.
        mid_block_add_attention=False,
        scaling_factor=1.0,  # replaced by 1/std of the latents after stage 1
    )


def build_text_encoder(preset: Preset, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.text_width,
        intermediate_size=4 * preset.text_width,
        num_hidden_layers=preset.text_layers,
        num_attention_heads=preset.text_heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=preset.text_width,
        bos_token_id=tokenizer.bos_token_id,
        # The pooled output is read at the first end token; the UNet does not use it, but keep it right.
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_unet(preset: Preset):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        # Cross-attention at 16x16 (full latent resolution) and 8x8: "on the left" must be able to
        # steer where features appear, which the coarse 4x4 level alone cannot do precisely.
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=preset.unet_channels,
        layers_per_block=preset.unet_layers,
        attention_head_dim=preset.unet_heads,  # diffusers' name; it is the number of heads
        cross_attention_dim=preset.text_width,
        norm_num_groups=_groups(preset.unet_channels),
        # A pooled text vector added to the timestep embedding conditions every ResNet block too,
        # not only the attention layers: a global "what and where" that the naive model lacked.
        addition_embed_type="text",
        addition_embed_type_num_heads=preset.text_heads,
    )


def build_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**SCHEDULER_CONFIG)


def build_pipeline(vae, text_encoder, tokenizer, unet, scheduler=None):
    """A StableDiffusionPipeline from the parts (no safety checker: the world is colored shapes)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler if scheduler is not None else build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def count_parameters(*modules) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def size_mb(*modules, bytes_per_parameter: Optional[int] = 4) -> float:
    return count_parameters(*modules) * bytes_per_parameter / 1e6
