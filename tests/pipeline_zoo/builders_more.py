"""More tiny seeded builders for the pipeline matrix (builders.py is near its size limit): the classes of
issue #21's "not built" list, each from its components' own constructors with random weights, offline."""
from __future__ import annotations

import torch

from nbdiffuse import testing

from builders import _quiet, _vae8  # noqa: F401  (shared helpers)

# A chat template that reads every message's text (content given as a string or as [{"type": "text", ...}]):
# what pipelines that prompt a chat model through apply_chat_template need of a tokenizer.
CHAT = ("{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        "{% endif %}{% endfor %}")


def _chat_tokenizer(max_length: int = 512):
    tokenizer = testing.tiny_t5_tokenizer(max_length=max_length)
    tokenizer.chat_template = CHAT
    return tokenizer


def _mistral3(tokenizer, hidden: int = 16, layers: int = 30):
    """A Mistral 3 (text + Pixtral vision) model with random weights; Flux 2 reads hidden states 10, 20, 30."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    text = {"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 32,
            "max_position_embeddings": 1024, "num_attention_heads": 2, "num_hidden_layers": layers,
            "num_key_value_heads": 1, "head_dim": 8, "sliding_window": None, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id}
    vision = {"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 16, "image_size": 32, "patch_size": 8, "num_channels": 3}
    config = Mistral3Config(text_config=text, vision_config=vision, image_token_index=len(tokenizer) - 1,
                            vision_feature_layer=-1)
    torch.manual_seed(0)
    return Mistral3ForConditionalGeneration(config).eval()


def _flux2_vae(latent_channels: int = 4):
    """An AutoencoderKLFlux2 2x down (its latents are patchified 2 x 2 and batch-normed by the pipeline)."""
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(0)
    return AutoencoderKLFlux2(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                              up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                              layers_per_block=1, latent_channels=latent_channels, norm_num_groups=8,
                              sample_size=32, use_quant_conv=False, use_post_quant_conv=False).eval()


def _flux2_transformer(text_dim: int, guidance_embeds: bool = True):
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(0)
    return Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_dim,
                                   timestep_guidance_channels=256, axes_dims_rope=(4, 4, 4, 4),
                                   guidance_embeds=guidance_embeds).eval()


def flux2():
    """Flux2Pipeline: a Mistral 3 encoder prompted through a chat template (a system message, then the prompt),
    a 4-axis-rope DiT on 2 x 2-patchified latents packed into tokens (no _unpack_latents: no previews)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    tokenizer = _chat_tokenizer()
    return _quiet(Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux2_vae(),
                                text_encoder=_mistral3(tokenizer), tokenizer=tokenizer,
                                transformer=_flux2_transformer(3 * 16)))


def _qwen3_lm(tokenizer, hidden: int = 16, layers: int = 28):
    """A Qwen 3 causal LM with random weights, read through its hidden states (Flux 2 Klein: 9, 18, 27)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                        head_dim=8, max_position_embeddings=1024,
                                        pad_token_id=tokenizer.pad_token_id)).eval()


def _flux2_klein(cls_name: str, **options):
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    tokenizer = _chat_tokenizer()
    cls = getattr(diffusers, cls_name)
    return _quiet(cls(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux2_vae(),
                      text_encoder=_qwen3_lm(tokenizer), tokenizer=tokenizer,
                      transformer=_flux2_transformer(3 * 16, guidance_embeds=False), **options))


def flux2_klein():
    """Flux2KleinPipeline: flux2()'s VAE and DiT (no guidance embedding: real CFG), a Qwen 3 encoder."""
    return _flux2_klein("Flux2KleinPipeline")


def flux2_klein_kv():
    """Flux2KleinKVPipeline: the step-distilled Klein (no guidance at all) with KV-cached reference attention."""
    return _flux2_klein("Flux2KleinKVPipeline")


def hunyuan_dit_pag():
    """HunyuanDiTPAGPipeline on builders.hunyuan_dit()'s parts, perturbed attention on its second block."""
    from builders import _img2img, hunyuan_dit

    return _img2img("HunyuanDiTPAGPipeline", hunyuan_dit, requires_safety_checker=False, pag_applied_layers="blocks.1")


def _alt_encoder(tokenizer, hidden: int = 32):
    """AltDiffusion's text encoder: an XLM-RoBERTa with a linear projection (RobertaSeriesModelWithTransformation)."""
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
        RobertaSeriesConfig, RobertaSeriesModelWithTransformation)

    config = RobertaSeriesConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=2 * hidden,
                                 max_position_embeddings=tokenizer.model_max_length + 2, project_dim=hidden,
                                 pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return RobertaSeriesModelWithTransformation(config).eval()


def alt_diffusion():
    """AltDiffusionPipeline (deprecated in diffusers, still exported): Stable Diffusion with an XLM-RoBERTa
    encoder; builders.sd()'s UNet, VAE and scheduler."""
    import warnings

    from diffusers import AltDiffusionPipeline
    from builders import sd

    parts = sd().components
    tokenizer = testing.tiny_t5_tokenizer(max_length=77)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The configuration file of this scheduler", FutureWarning)
        return _quiet(AltDiffusionPipeline(vae=parts["vae"], text_encoder=_alt_encoder(tokenizer), tokenizer=tokenizer,
                                           unet=parts["unet"], scheduler=parts["scheduler"], safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False))


def alt_diffusion_img2img():
    from builders import _img2img

    return _img2img("AltDiffusionImg2ImgPipeline", alt_diffusion, requires_safety_checker=False)
