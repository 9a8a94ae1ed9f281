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


def _vae(seed: int = 0, latent_channels: int = 4, **config):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                         norm_num_groups=8, latent_channels=latent_channels, sample_size=32, **config).eval()


def tiny_sd_pipeline(prediction_type: str = "epsilon", seed: int = 0, sample_size: int = 8,
                     channels: tuple[int, int] = (32, 64), layers: int = 1, time_cond_proj_dim: int | None = None):
    """A StableDiffusionPipeline with random weights: 8x8x4 latents, 16x16 images, an Euler scheduler.

    time_cond_proj_dim: a guidance-embedding UNet (LCM-distilled): guidance is a model input, no CFG.

    Larger `sample_size` / `channels` / `layers` give a model with realistic compute per step
    (benchmarks), e.g. sample_size=16, channels=(64, 128), layers=2 is about the embedded model's size.
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=layers,
                                block_out_channels=channels, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=16,
                                time_cond_proj_dim=time_cond_proj_dim).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       prediction_type=prediction_type, timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=_vae(seed), text_encoder=_text_encoder(tokenizer, 32, seed=seed),
                                   tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(seed: int = 0, sample_size: int = 8, time_cond_proj_dim: int | None = None):
    """A StableDiffusionXLPipeline with random weights: two text encoders, size conditioning."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
                                attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=8 * 6 + 32, norm_num_groups=16,
                                time_cond_proj_dim=time_cond_proj_dim).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=_vae(seed), text_encoder=_text_encoder(tokenizer, 32, seed=seed),
                                     text_encoder_2=_text_encoder(tokenizer, 32, projection=32, seed=seed + 1),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_pipeline(seed: int = 0, sample_size: int = 8, t5: bool = False):
    """A StableDiffusion3Pipeline with random weights (flow matching, MMDiT, two CLIP encoders; t5=True: and a
    T5 encoder, whose tokens follow CLIP's 77 in the transformer's text sequence)."""
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
    if t5:  # its width is the joint attention's: SD3 pads CLIP's 32 + 32 channels to it
        pipe.tokenizer_3 = tiny_t5_tokenizer()
        pipe.text_encoder_3 = _t5_encoder(pipe.tokenizer_3, hidden=64, seed=seed + 2)
        pipe.register_modules(text_encoder_3=pipe.text_encoder_3, tokenizer_3=pipe.tokenizer_3)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_t5_tokenizer(max_length: int = 512):
    """A character-level T5 tokenizer (a Unigram model: one piece per character, "▁x" at word starts).

    Built with the `tokenizers` library and round-tripped through save_pretrained, so it loads
    exactly as a saved pipeline's tokenizer will. (A WordLevel model would not reload in transformers 5.)
    """
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("\u2581" + c, -2.5) for c in chars]
    model = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                         special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                extra_ids=0, model_max_length=max_length)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return T5TokenizerFast.from_pretrained(tmp)


def _t5_encoder(tokenizer, hidden: int = 32, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), d_model=hidden, d_kv=8, d_ff=2 * hidden, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()


def tiny_flux_pipeline(seed: int = 0, guidance_embeds: bool = True, latent_channels: int = 16):
    """A FluxPipeline with random weights: 16-channel VAE (latents 1/2 the image side), packed 2x2 for the
    transformer, a CLIP and a T5 text encoder. guidance_embeds=True is Flux-dev-like (distilled guidance
    is a model input, dynamic shifting); False is Flux-schnell-like (no guidance input, shift 1).
    Sizes must be multiples of 4 pixels; trace(..., height=32, width=32) is a 16x16x16 latent.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    clip_tokenizer = tiny_tokenizer()
    t5_tokenizer = tiny_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4 * latent_channels, num_layers=1,
                                         num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                         joint_attention_dim=32, pooled_projection_dim=32,
                                         guidance_embeds=guidance_embeds, axes_dims_rope=(4, 4, 8)).eval()
    if guidance_embeds:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                    max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = FluxPipeline(
        transformer=transformer, scheduler=scheduler,
        vae=_vae(seed, latent_channels=latent_channels, scaling_factor=0.3611, shift_factor=0.1159,
                 use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_text_encoder(clip_tokenizer, 32, seed=seed), tokenizer=clip_tokenizer,
        text_encoder_2=_t5_encoder(t5_tokenizer, 32, seed=seed + 1), tokenizer_2=t5_tokenizer,
    )
    pipe.default_sample_size = 16  # 32 x 32 images when no size is given (the real Flux: 128 -> 1024)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pixart_pipeline(seed: int = 0, sigma: bool = True, sample_size: int = 8):
    """A PixArtSigmaPipeline (or PixArtAlphaPipeline with sigma=False) with random weights: a DiT with
    learned sigma (8 output channels for 4 latent ones), a T5 text encoder, a DPM-Solver++ scheduler."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = tiny_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(sample_size=sample_size, num_layers=2, patch_size=2, attention_head_dim=8,
                                           num_attention_heads=3, caption_channels=32, in_channels=4,
                                           cross_attention_dim=24, out_channels=8, attention_bias=True,
                                           activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                           norm_type="ada_norm_single", norm_elementwise_affine=False,
                                           norm_eps=1e-6).eval()
    scheduler = DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                            algorithm_type="dpmsolver++", solver_order=2)
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    pipe = cls(tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer, 32, seed=seed + 1), vae=_vae(seed),
               transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_lcm_pipeline(seed: int = 0):
    """A LatentConsistencyModelPipeline (outside nbdiffuse's families: the generic path) with an LCMScheduler,
    a stochastic sampler whose set_timesteps takes original_inference_steps, on a guidance-embedding UNet."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    parts = tiny_sd_pipeline(seed=seed, time_cond_proj_dim=32).components
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                             original_inference_steps=50)
    pipe = LatentConsistencyModelPipeline(**{**{k: v for k, v in parts.items() if k != "image_encoder"},
                                             "scheduler": scheduler}, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sana_sprint_pipeline(seed: int = 0):
    """A SanaSprintPipeline (generic path): a DC-AE (latents 1/2 the image side), a Gemma2 text encoder, an SCM
    scheduler; it returns denoised / sigma_data after its loop, not its last step's latents."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                         num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                         cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                                         sample_size=32, qk_norm="rms_norm_across_heads", guidance_embeds=True).eval()
    blocks = ("ResBlock", "EfficientViTBlock")
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=blocks,
                        decoder_block_types=blocks, encoder_block_out_channels=(8, 8),
                        decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)),
                        decoder_qkv_multiscales=((), (5,)), encoder_layers_per_block=(1, 1),
                        decoder_layers_per_block=(1, 1), downsample_block_type="conv",
                        upsample_block_type="interpolate", decoder_norm_types="rms_norm", decoder_act_fns="silu",
                        scaling_factor=0.41407).eval()
    config = Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=64, max_position_embeddings=8192,
                          num_attention_heads=2, num_hidden_layers=1, num_key_value_heads=2,
                          vocab_size=len(tokenizer), attn_implementation="eager")
    pipe = SanaSprintPipeline(tokenizer=tokenizer, text_encoder=Gemma2Model(config).eval(), vae=vae,
                              transformer=transformer, scheduler=SCMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_hunyuan_dit_pipeline(seed: int = 0):
    """A HunyuanDiTPipeline (generic path): a DiT with a BERT and a T5 text encoder, a DDPM scheduler; its
    __call__ snaps sizes to multiples of 16 and, by default, to a trained resolution bin."""
    from diffusers import AutoencoderKL, DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel

    tokenizer, t5_tokenizer = tiny_tokenizer(), tiny_t5_tokenizer(256)
    torch.manual_seed(seed)
    transformer = HunyuanDiT2DModel(sample_size=16, num_layers=2, patch_size=2, attention_head_dim=8,
                                    num_attention_heads=3, in_channels=4, cross_attention_dim=32,
                                    cross_attention_dim_t5=32, pooled_projection_dim=16, hidden_size=24,
                                    activation_fn="gelu-approximate").eval()
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=37)).eval()
    # its __call__ assumes a VAE that scales by 8 (the rotary grid is height // 8): four blocks
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                        norm_num_groups=8, latent_channels=4, sample_size=32).eval()
    pipe = HunyuanDiTPipeline(vae=vae, text_encoder=bert, tokenizer=tokenizer, transformer=transformer,
                              scheduler=DDPMScheduler(), safety_checker=None, feature_extractor=None,
                              requires_safety_checker=False, text_encoder_2=_t5_encoder(t5_tokenizer, 32, seed=seed + 1),
                              tokenizer_2=t5_tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pag_pipeline(seed: int = 0):
    """A StableDiffusionPAGPipeline (perturbed-attention guidance on the UNet's mid block) built from
    tiny_sd_pipeline's components: the SD family's loop runs it with its PAG (core/pag.py)."""
    from diffusers import StableDiffusionPAGPipeline

    parts = tiny_sd_pipeline(seed=seed).components
    pipe = StableDiffusionPAGPipeline(**{k: v for k, v in parts.items() if k != "image_encoder"},
                                      requires_safety_checker=False, pag_applied_layers="mid")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_alt_diffusion_pipeline(seed: int = 0):
    """An AltDiffusionPipeline (Stable Diffusion with an XLM-RoBERTa text encoder) on tiny_sd_pipeline's UNet,
    VAE and scheduler: a real pipeline outside nbdiffuse's families (no StableDiffusionPipeline subclass) that
    takes callback_on_step_end with "latents": the generic path's test pipeline."""
    from diffusers import AltDiffusionPipeline
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
        RobertaSeriesConfig, RobertaSeriesModelWithTransformation)

    parts = tiny_sd_pipeline(seed=seed).components
    tokenizer = tiny_t5_tokenizer(max_length=77)
    config = RobertaSeriesConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=tokenizer.model_max_length + 2,
                                 project_dim=32, pad_token_id=tokenizer.pad_token_id,
                                 bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    encoder = RobertaSeriesModelWithTransformation(config).eval()
    pipe = AltDiffusionPipeline(vae=parts["vae"], text_encoder=encoder, tokenizer=tokenizer, unet=parts["unet"],
                                scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None,
                                requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_lora(folder, text_encoder=False, seed=0):
    """Save a LoRA for tiny_sd_pipeline() into `folder`: rank 4 on the UNet's attention projections
    (and the text encoder's, if asked), with seeded non-zero lora_B so that it changes what the
    model predicts. Needs peft. -> folder"""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = tiny_sd_pipeline()
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = {"unet_lora_layers": pipe.unet}
    if text_encoder:
        # peft's own injection (what transformers' add_adapter calls), so that making the file does not
        # hang on transformers' peft version check: loading it is what the tests check
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj",
                                                                              "out_proj"]), pipe.text_encoder)
        layers["text_encoder_lora_layers"] = pipe.text_encoder
    g = torch.Generator().manual_seed(seed)
    for model in layers.values():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                with torch.no_grad():
                    param.copy_(0.5 * torch.randn(param.shape, generator=g))
    state = {key: convert_state_dict_to_diffusers(get_peft_model_state_dict(model)) for key, model in layers.items()}
    StableDiffusionPipeline.save_lora_weights(folder, safe_serialization=True, **state)
    return folder


def tiny_controlnet(pipe, seed: int = 0):
    """A ControlNetModel for a tiny pipeline's UNet (diffusers' from_unet), its zero convolutions given
    seeded weights so that the control picture changes what the model predicts."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    downsamples = int(pipe.vae_scale_factor).bit_length() - 1  # the control picture at the latent grid's size
    net = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=tuple(8 * 2**k for k in
                                                                                         range(downsamples + 1)))
    seeded_weights([*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out],
                   seed)
    return net.eval()


def seeded_weights(layers, seed: int = 0):
    """Give a ControlNet's zero-initialised layers seeded weights (0.1 x normal), so that it acts: diffusers
    starts every ControlNet as a no-op."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.1)
    return layers


def tiny_controlnet_pipeline(xl: bool = False, seed: int = 0, nets: int = 1):
    """tiny_sd_pipeline's (or tiny_sdxl_pipeline's) components with a tiny_controlnet: a real
    StableDiffusion(XL)ControlNetPipeline for tests of nbd.trace(..., control_image=...). nets > 1:
    that many tiny ControlNets (seeds seed, seed + 1, ...) in diffusers' MultiControlNetModel."""
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline

    base = tiny_sdxl_pipeline(seed=seed) if xl else tiny_sd_pipeline(seed=seed)
    cls = StableDiffusionXLControlNetPipeline if xl else StableDiffusionControlNetPipeline
    made = [tiny_controlnet(base, seed + j) for j in range(nets)]
    pipe = cls.from_pipe(base, controlnet=made[0] if nets == 1 else made)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux_controlnet_pipeline(seed: int = 0, guidance_embeds: bool = True, nets: int = 1, union: bool = False):
    """tiny_flux_pipeline's components with a tiny FluxControlNetModel (its zero-initialised output layers
    seeded, so the picture steers): a FluxControlNetPipeline. guidance_embeds=False: a Flux with true guidance;
    nets > 1: that many (seeds seed, seed + 1, ...) in a FluxMultiControlNetModel; union: a union ControlNet."""
    from diffusers import FluxControlNetModel, FluxControlNetPipeline, FluxMultiControlNetModel

    base = tiny_flux_pipeline(seed=seed, guidance_embeds=guidance_embeds)
    config = base.transformer.config
    made = []
    for j in range(nets):
        torch.manual_seed(seed + j)
        net = FluxControlNetModel(patch_size=config.patch_size, in_channels=config.in_channels, num_layers=1,
                                  num_single_layers=1, attention_head_dim=config.attention_head_dim,
                                  num_attention_heads=config.num_attention_heads,
                                  joint_attention_dim=config.joint_attention_dim,
                                  pooled_projection_dim=config.pooled_projection_dim, guidance_embeds=guidance_embeds,
                                  axes_dims_rope=list(config.axes_dims_rope), num_mode=3 if union else None)
        seeded_weights([*net.controlnet_blocks, *net.controlnet_single_blocks, net.controlnet_x_embedder], seed + j)
        made.append(net.eval())
    pipe = FluxControlNetPipeline.from_pipe(base, controlnet=made[0] if nets == 1 else FluxMultiControlNetModel(made))
    pipe.set_progress_bar_config(disable=True)
    pipe.default_sample_size = 16
    return pipe


def tiny_cogview3plus_pipeline(seed: int = 0):
    """A CogView3PlusPipeline (generic path) on its own CogVideoXDDIMScheduler, a sampler nbdiffuse has no
    short name for (v-prediction, zero-SNR betas, trailing spacing)."""
    from diffusers import CogVideoXDDIMScheduler, CogView3PlusPipeline, CogView3PlusTransformer2DModel

    tokenizer = tiny_t5_tokenizer(224)
    torch.manual_seed(seed)
    transformer = CogView3PlusTransformer2DModel(patch_size=2, in_channels=4, num_layers=1, attention_head_dim=4,
                                                 num_attention_heads=2, out_channels=4, text_embed_dim=32,
                                                 time_embed_dim=8, condition_dim=2, pos_embed_max_size=8,
                                                 sample_size=8).eval()
    scheduler = CogVideoXDDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       clip_sample=False, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                       timestep_spacing="trailing", set_alpha_to_one=True)
    pipe = CogView3PlusPipeline(tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer, 32, seed=seed), vae=_vae(seed),
                                transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
