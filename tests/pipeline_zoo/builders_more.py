"""More tiny seeded builders for the pipeline matrix (builders.py is near its size limit): the classes of
issue #21's "not built" list, each from its components' own constructors with random weights, offline."""
from __future__ import annotations

import torch

from nbdiffuse import testing

from builders import _quiet, _qwen3_config  # shared helpers


def _vae8c(latent_channels: int = 16, **config):
    """builders._vae8 (an AutoencoderKL 8x down) with other latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                         layers_per_block=1, norm_num_groups=8, latent_channels=latent_channels, sample_size=32,
                         **config).eval()

# A chat template that reads every message's text (content given as a string or as [{"type": "text", ...}]):
# what pipelines that prompt a chat model through apply_chat_template need of a tokenizer.
CHAT = ("{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        "{% endif %}{% endfor %}")


def _chat_tokenizer(max_length: int = 512):
    tokenizer = testing.tiny_t5_tokenizer(max_length=max_length)
    tokenizer.chat_template = CHAT
    return tokenizer


def _mistral3_config(tokenizer, hidden: int = 16, layers: int = 30):
    """A Mistral 3 (text + Pixtral vision) config; Flux 2 reads hidden states 10, 20, 30."""
    from transformers import Mistral3Config

    text = {"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 32,
            "max_position_embeddings": 1024, "num_attention_heads": 2, "num_hidden_layers": layers,
            "num_key_value_heads": 1, "head_dim": 8, "sliding_window": None, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id}
    vision = {"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 16, "image_size": 32, "patch_size": 8, "num_channels": 3}
    return Mistral3Config(text_config=text, vision_config=vision, image_token_index=len(tokenizer) - 1,
                          vision_feature_layer=-1)


def _mistral3(tokenizer, hidden: int = 16, layers: int = 30):
    from transformers import Mistral3ForConditionalGeneration

    config = _mistral3_config(tokenizer, hidden, layers)
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
    from transformers import Qwen3ForCausalLM

    return Qwen3ForCausalLM(_qwen3_config(tokenizer, hidden, layers, 1024)).eval()


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


def alt_diffusion():
    """AltDiffusionPipeline (deprecated in diffusers, still exported): Stable Diffusion with an XLM-RoBERTa
    encoder (testing.tiny_alt_diffusion_pipeline) on builders.sd()'s scheduler."""
    from builders import sd

    pipe = testing.tiny_alt_diffusion_pipeline()
    pipe.scheduler = sd().scheduler
    return _quiet(pipe)


def alt_diffusion_img2img():
    from builders import _img2img

    return _img2img("AltDiffusionImg2ImgPipeline", alt_diffusion, requires_safety_checker=False)


def _llama(tokenizer, hidden: int = 16, layers: int = 2):
    """A Llama causal LM with random weights, read through all its hidden states (HiDream: its layers 0 and 1)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                                        attn_implementation="eager")).eval()


def hidream():
    """HiDreamImagePipeline: two CLIPs (pooled), a T5 and a Llama (every layer's hidden states), a
    mixture-of-experts DiT on 2 x 2 patches; latents stay (B, C, h, w)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel

    clip = testing.tiny_tokenizer(max_length=128)
    t5 = testing.tiny_t5_tokenizer(max_length=128)
    llama_tokenizer = testing.tiny_t5_tokenizer(max_length=128)
    torch.manual_seed(0)
    transformer = HiDreamImageTransformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                                 num_single_layers=1, attention_head_dim=8, num_attention_heads=4,
                                                 caption_channels=[32, 16], text_emb_dim=64, num_routed_experts=4,
                                                 num_activated_experts=2, axes_dims_rope=(4, 2, 2),
                                                 max_resolution=(32, 32), llama_layers=(0, 1)).eval()
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=testing._vae(0, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=testing._text_encoder(clip, 32, projection=32), tokenizer=clip,
        text_encoder_2=testing._text_encoder(clip, 32, projection=32, seed=1), tokenizer_2=clip,
        text_encoder_3=testing._t5_encoder(t5, 32), tokenizer_3=t5,
        text_encoder_4=_llama(llama_tokenizer), tokenizer_4=llama_tokenizer, transformer=transformer)
    pipe.default_sample_size = 16  # its __call__ scales any size to this area: 32 x 32 (the real one: 1024 x 1024)
    return _quiet(pipe)


def _qwen25_vl(tokenizer, hidden: int = 32, layers: int = 2):
    """A Qwen 2.5-VL model (text and vision towers) with random weights, read through its hidden states."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    n = len(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": hidden, "intermediate_size": hidden, "num_hidden_layers": layers,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": n,
                     "max_position_embeddings": 1024, "pad_token_id": tokenizer.pad_token_id,
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
                     "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": hidden, "intermediate_size": hidden, "num_heads": 2,
                       "out_hidden_size": hidden},
        hidden_size=hidden, vocab_size=n, vision_start_token_id=n - 3, vision_end_token_id=n - 2,
        vision_token_id=n - 1, image_token_id=n - 1, video_token_id=n - 1)
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def kandinsky5_t2i():
    """Kandinsky5T2IPipeline: a Qwen 2.5-VL and a pooled CLIP encoder, a 3-D (video-style) DiT on one frame:
    its latents are (B, 1, h, w, C), a layout nbdiffuse does not unpack (no previews). Its sizes are a list
    of trained ones (pipe.resolutions), others are snapped to the nearest aspect: here 32 x 32."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky5T2IPipeline, Kandinsky5Transformer3DModel

    qwen_tokenizer = testing.tiny_t5_tokenizer(max_length=1024)
    clip = testing.tiny_tokenizer()
    torch.manual_seed(0)
    transformer = Kandinsky5Transformer3DModel(in_visual_dim=16, in_text_dim=32, in_text_dim2=32, time_dim=16,
                                               out_visual_dim=16, patch_size=(1, 2, 2), model_dim=16, ff_dim=32,
                                               num_text_blocks=1, num_visual_blocks=1, axes_dims=(1, 1, 2),
                                               visual_cond=False, attention_type="regular").eval()
    vae = _vae8c(16, scaling_factor=0.3611, shift_factor=0.1159)
    pipe = Kandinsky5T2IPipeline(transformer=transformer, vae=vae, text_encoder=_qwen25_vl(qwen_tokenizer),
                                 tokenizer=qwen_tokenizer, text_encoder_2=testing._text_encoder(clip, 32), tokenizer_2=clip,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    pipe.resolutions = [(32, 32)]
    return _quiet(pipe)


def _passing_safety_checker():
    """A stand-in for Cosmos' guardrail (cosmos_guardrail: large models, not installed), as diffusers' own fast
    tests use: every prompt and picture passes unchanged. Cosmos2TextToImagePipeline makes the real one
    when given None, and cannot run without one."""
    from diffusers.configuration_utils import ConfigMixin
    from diffusers.models.modeling_utils import ModelMixin

    class PassingSafetyChecker(ModelMixin, ConfigMixin):
        def __init__(self):
            super().__init__()
            self.register_buffer("_where", torch.zeros(1), persistent=False)  # its device and dtype

        @property
        def device(self):
            return self._where.device

        @property
        def dtype(self):
            return self._where.dtype

        def check_text_safety(self, prompt: str) -> bool:
            return True

        def check_video_safety(self, frames):
            return frames

    return PassingSafetyChecker()


def cosmos2_t2i():
    """Cosmos2TextToImagePipeline: a T5 encoder, a 3-D DiT and a Wan VAE (8x down) on one frame: its latents are
    (B, C, 1, h, w), which nbdiffuse records without previews. The DiT without the padding-mask channel (the
    real one has it): resizing the mask needs torchvision, which nbdiffuse does not depend on."""
    from diffusers import (AutoencoderKLWan, Cosmos2TextToImagePipeline, CosmosTransformer3DModel,
                           FlowMatchEulerDiscreteScheduler)

    tokenizer = testing.tiny_t5_tokenizer(max_length=512)
    torch.manual_seed(0)
    transformer = CosmosTransformer3DModel(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16,
                                           num_layers=1, mlp_ratio=2, text_embed_dim=32, adaln_lora_dim=4,
                                           max_size=(4, 32, 32), patch_size=(1, 2, 2), rope_scale=(2.0, 1.0, 1.0),
                                           concat_padding_mask=False, extra_pos_embed_type="learnable").eval()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    return _quiet(Cosmos2TextToImagePipeline(
        text_encoder=testing._t5_encoder(tokenizer, 32), tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True), safety_checker=_passing_safety_checker()))


QWEN_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _text_processor(tokenizer):
    """A processor over the tokenizer alone (transformers' ProcessorMixin): what a text-to-image run asks of a
    Qwen-VL processor (processor(text=...), apply_chat_template, .tokenizer). Qwen3VLProcessor itself cannot be
    made here: its image and video processors need torchvision, which nbdiffuse does not depend on."""
    from transformers import ProcessorMixin

    class TextProcessor(ProcessorMixin):
        attributes = ["tokenizer"]
        tokenizer_class = "AutoTokenizer"

        def __init__(self, tokenizer, chat_template=None):
            super().__init__(tokenizer, chat_template=chat_template)

        def __call__(self, text=None, images=None, videos=None, audio=None, **kwargs):
            if images is not None or videos is not None or audio is not None:
                raise ValueError("this tiny processor reads text only")
            return self.tokenizer([text] if isinstance(text, str) else text, **kwargs)  # a batch, as Qwen-VL's

    return TextProcessor(tokenizer, chat_template=CHAT)


def qwenimage21():
    """QwenImage21Pipeline: a Qwen 3-VL encoder (its last layer before the final norm), a single-stream DiT on a
    16x-down RGBA VAE's latents packed into tokens (its own _unpack_latents makes them 5-D, B x C x 1 x h x w:
    no previews)."""
    from diffusers import (AutoencoderKLQwenImage21, FlowMatchEulerDiscreteScheduler, QwenImage21Pipeline,
                           QwenImage21Transformer2DModel)
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = _chat_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    n = len(tokenizer)
    torch.manual_seed(0)
    transformer = QwenImage21Transformer2DModel(patch_size=1, in_channels=8, out_channels=8, num_layers=1,
                                                attention_head_dim=16, num_attention_heads=2, context_in_dim=16,
                                                mlp_ratio=2, axes_dims_rope=(4, 6, 6)).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage21(base_dim=4, decoder_base_dim=4, z_dim=8, dim_mult=[1, 1, 1, 1, 1], num_res_blocks=1,
                                   attn_scales=[], temperal_downsample=[False, True, True, True],
                                   latents_mean=[0.0] * 8, latents_std=[1.0] * 8).eval()
    config = Qwen3VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "head_dim": 8, "vocab_size": n, "pad_token_id": tokenizer.pad_token_id,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "num_position_embeddings": 64, "deepstack_visual_indexes": [0]},
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"))
    torch.manual_seed(0)
    encoder = Qwen3VLForConditionalGeneration(config).eval()
    return _quiet(QwenImage21Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=encoder,
                                      processor=_text_processor(tokenizer), transformer=transformer))


def ovis_image():
    """OvisImagePipeline: Flux-like packed latents (its own _unpack_latents), a Qwen 3 encoder prompted through a
    chat template (a system prompt before the user's, whose first 28 tokens it drops)."""
    from builders import _qwen3_encoder
    from diffusers import FlowMatchEulerDiscreteScheduler, OvisImagePipeline, OvisImageTransformer2DModel

    tokenizer = _chat_tokenizer(max_length=1024)
    torch.manual_seed(0)
    transformer = OvisImageTransformer2DModel(patch_size=1, in_channels=64, out_channels=64, num_layers=1,
                                              num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                              joint_attention_dim=16, axes_dims_rope=(4, 4, 8)).eval()
    vae = testing._vae(0, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                       use_post_quant_conv=False)
    return _quiet(OvisImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                    text_encoder=_qwen3_encoder(tokenizer), tokenizer=tokenizer,
                                    transformer=transformer))



def krea2():
    """Krea2Pipeline: a Qwen 3-VL text model (layers 0-2 stacked per token), a DiT on 2 x 2-packed latents of a
    Qwen-Image VAE (its _unpack_latents is an instance method of another signature, and makes 5-D latents:
    nbdiffuse keeps them packed, without previews)."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, Krea2Pipeline,
                           Krea2Transformer2DModel)
    from transformers import Qwen3VLConfig, Qwen3VLModel

    tokenizer = testing.tiny_t5_tokenizer(max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    torch.manual_seed(0)
    transformer = Krea2Transformer2DModel(in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=4,
                                          num_key_value_heads=2, intermediate_size=32, timestep_embed_dim=8,
                                          text_hidden_dim=16, num_text_layers=3, text_num_attention_heads=2,
                                          text_num_key_value_heads=1, text_intermediate_size=16,
                                          num_layerwise_text_blocks=1, num_refiner_text_blocks=1,
                                          axes_dims_rope=(4, 2, 2), rope_theta=1000.0).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=6400)
    config = Qwen3VLConfig(text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
                                        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
                                        "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id},
                           vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                                          "out_hidden_size": 16},
                           vocab_size=len(tokenizer))
    torch.manual_seed(0)
    encoder = Qwen3VLModel(config).eval()
    return _quiet(Krea2Pipeline(scheduler=scheduler, vae=vae, text_encoder=encoder, tokenizer=tokenizer,
                                transformer=transformer, text_encoder_select_layers=(0, 1, 2)))


def ernie_image():
    """ErnieImagePipeline: a Mistral 3 model (its second-last hidden state), a single-stream DiT on 2 x 2-patchified,
    batch-normed Flux 2 VAE latents (B, 4C, h, w); no prompt enhancer (pe, optional)."""
    from diffusers import ErnieImagePipeline, ErnieImageTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import Mistral3Model

    tokenizer = testing.tiny_t5_tokenizer(max_length=512)
    torch.manual_seed(0)
    transformer = ErnieImageTransformer2DModel(hidden_size=32, num_attention_heads=2, num_layers=1, ffn_hidden_size=32,
                                               in_channels=16, out_channels=16, patch_size=1, text_in_dim=16,
                                               rope_axes_dim=(4, 6, 6)).eval()
    torch.manual_seed(0)
    text_encoder = Mistral3Model(_mistral3_config(tokenizer, layers=2)).eval()
    return _quiet(ErnieImagePipeline(transformer=transformer, vae=_flux2_vae(), text_encoder=text_encoder,
                                     tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler()))

