"""Tiny seeded builders for the pipeline matrix: one function per diffusers pipeline class.

Each builds real components with random weights (a few thousand parameters, 16 x 16 to 32 x 32
pictures) from the component classes' own constructors; the shared pieces (CLIP and T5 text
encoders, tokenizers, an AutoencoderKL) are nbdiffuse.testing's.
"""
from __future__ import annotations

import inspect
import warnings

import torch

from nbdiffuse import testing


def _vae8(**config):
    """An AutoencoderKL 8x down, for pipelines that take a VAE factor of 8 for granted (Lumina 2, HunyuanDiT)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                         layers_per_block=1, norm_num_groups=8, latent_channels=4, sample_size=32, **config).eval()


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd():
    """tiny_sd_pipeline with a scheduler config that leaves steps_offset at its default (0), as many
    checkpoints' do: StableDiffusionPipeline.__init__ sets it to 1 (issue #21 A)."""
    from diffusers import EulerDiscreteScheduler

    pipe = testing.tiny_sd_pipeline()
    pipe.scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            timestep_spacing="leading")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The configuration file of this scheduler", FutureWarning)
        return _quiet(type(pipe)(**pipe.components, requires_safety_checker=False))


def sdxl():
    return testing.tiny_sdxl_pipeline()


def sd3():
    return testing.tiny_sd3_pipeline()


def flux():
    return testing.tiny_flux_pipeline()


def sd_pag():
    from diffusers import StableDiffusionPAGPipeline

    parts = sd().components
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The configuration file of this scheduler", FutureWarning)
        return _quiet(StableDiffusionPAGPipeline(**{k: v for k, v in parts.items() if k != "image_encoder"},
                                                 requires_safety_checker=False, pag_applied_layers="mid"))


def sdxl_pag():
    from diffusers import StableDiffusionXLPAGPipeline

    parts = testing.tiny_sdxl_pipeline().components
    return _quiet(StableDiffusionXLPAGPipeline(**{k: v for k, v in parts.items()
                                                   if k not in ("image_encoder", "feature_extractor")},
                                                pag_applied_layers="mid"))


def sd3_pag():
    from diffusers import StableDiffusion3PAGPipeline

    parts = testing.tiny_sd3_pipeline().components
    return _quiet(StableDiffusion3PAGPipeline(**{k: v for k, v in parts.items()
                                                  if k not in ("image_encoder", "feature_extractor")},
                                               pag_applied_layers="blocks.0"))


def _img2img(cls_name, base, **options):
    """`cls_name` built from the components of the pipeline `base()` builds (those it takes)."""
    import diffusers

    parts = base().components
    cls = getattr(diffusers, cls_name)
    accepted = inspect.signature(cls.__init__).parameters
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The configuration file of this scheduler", FutureWarning)
        return _quiet(cls(**{k: v for k, v in parts.items() if k in accepted}, **options))


def sd_pag_img2img():
    return _img2img("StableDiffusionPAGImg2ImgPipeline", sd, requires_safety_checker=False, pag_applied_layers="mid")


def sdxl_pag_img2img():
    return _img2img("StableDiffusionXLPAGImg2ImgPipeline", sdxl, pag_applied_layers="mid")


def sd3_pag_img2img():
    return _img2img("StableDiffusion3PAGImg2ImgPipeline", sd3, pag_applied_layers="blocks.0")


def lcm_img2img():
    return _img2img("LatentConsistencyModelImg2ImgPipeline", lcm, requires_safety_checker=False)


def kandinsky3_img2img():
    return _img2img("Kandinsky3Img2ImgPipeline", kandinsky3)


def zimage_img2img():
    return _img2img("ZImageImg2ImgPipeline", zimage)


def sana_pag():
    return _img2img("SanaPAGPipeline", sana, pag_applied_layers="transformer_blocks.0")


def panorama():
    """StableDiffusionPanoramaPipeline (MultiDiffusion: windows over wide latents) on sd()'s parts, DDIM."""
    from diffusers import DDIMScheduler

    pipe = _img2img("StableDiffusionPanoramaPipeline", sd, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


def sd_img2img():
    return _img2img("StableDiffusionImg2ImgPipeline", sd)


def sdxl_img2img():
    return _img2img("StableDiffusionXLImg2ImgPipeline", sdxl)


def sd3_img2img():
    return _img2img("StableDiffusion3Img2ImgPipeline", sd3)


def flux_img2img():
    pipe = _img2img("FluxImg2ImgPipeline", flux)
    pipe.default_sample_size = 16
    return pipe


def lcm():
    """LatentConsistencyModelPipeline: a UNet with a guidance embedding (time_cond_proj_dim) and LCMScheduler."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel

    base = testing.tiny_sd_pipeline()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=16, time_cond_proj_dim=32).eval()
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return _quiet(LatentConsistencyModelPipeline(vae=base.vae, text_encoder=base.text_encoder,
                                                 tokenizer=base.tokenizer, unet=unet, scheduler=scheduler,
                                                 safety_checker=None, feature_extractor=None,
                                                 requires_safety_checker=False))


def sana():
    """SanaPipeline: a DC-AE (AutoencoderDC, 8x down), a Gemma 2 text encoder, a linear-attention DiT."""
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = testing.tiny_t5_tokenizer(max_length=300)
    torch.manual_seed(0)
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",),
                        decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",),
                        encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                        encoder_layers_per_block=(1,) * 4, decoder_layers_per_block=(1,) * 4,
                        encoder_qkv_multiscales=((),) * 3 + ((5,),), decoder_qkv_multiscales=((),) * 3 + ((5,),),
                        upsample_block_type="interpolate", downsample_block_type="stride_conv",
                        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407).eval()
    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=4,
                                         num_layers=1, num_cross_attention_heads=2, cross_attention_head_dim=4,
                                         cross_attention_dim=8, caption_channels=32, sample_size=16,
                                         patch_size=1).eval()
    torch.manual_seed(0)
    encoder = Gemma2Model(Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                       head_dim=16, max_position_embeddings=2048,
                                       pad_token_id=tokenizer.pad_token_id)).eval()
    scheduler = DPMSolverMultistepScheduler(flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction")
    return _quiet(SanaPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=vae, transformer=transformer,
                               scheduler=scheduler))


def kandinsky3():
    """Kandinsky3Pipeline: a T5 encoder, Kandinsky3UNet and a MoVQ decoder under `movq` (no `vae`)."""
    from diffusers import DDPMScheduler, Kandinsky3Pipeline, Kandinsky3UNet, VQModel

    tokenizer = testing.tiny_t5_tokenizer(max_length=128)
    torch.manual_seed(0)
    unet = Kandinsky3UNet(in_channels=4, time_embedding_dim=4, groups=2, attention_head_dim=4, layers_per_block=3,
                          block_out_channels=(32, 64), cross_attention_dim=4, encoder_hid_dim=32).eval()
    torch.manual_seed(0)
    # 8x down, as Kandinsky3Pipeline assumes (its latents are height // 8)
    movq = VQModel(block_out_channels=(32, 32, 32, 64), down_block_types=("DownEncoderBlock2D",) * 3
                   + ("AttnDownEncoderBlock2D",), in_channels=3, latent_channels=4, layers_per_block=1,
                   norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12, out_channels=3,
                   up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3, vq_embed_dim=4).eval()
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="squaredcos_cap_v2",
                              clip_sample=True, thresholding=False)
    return _quiet(Kandinsky3Pipeline(tokenizer=tokenizer, text_encoder=testing._t5_encoder(tokenizer, 32),
                                     unet=unet, scheduler=scheduler, movq=movq))


def auraflow():
    from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = testing.tiny_t5_tokenizer(max_length=256)
    torch.manual_seed(0)
    transformer = AuraFlowTransformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_mmdit_layers=1,
                                             num_single_dit_layers=1, attention_head_dim=8, num_attention_heads=2,
                                             joint_attention_dim=32, caption_projection_dim=16, out_channels=4,
                                             pos_embed_max_size=64).eval()
    torch.manual_seed(0)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                          num_heads=4, relative_attention_num_buckets=8,
                                          pad_token_id=tokenizer.pad_token_id,
                                          decoder_start_token_id=tokenizer.pad_token_id)).eval()
    return _quiet(AuraFlowPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=testing._vae(0),
                                   transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler()))


def cogview3plus():
    return testing.tiny_cogview3plus_pipeline()


def zimage():
    """ZImagePipeline: a Qwen 3 text encoder read through a chat template, a single-stream DiT; its
    default size is written in its __call__ (`height = height or 1024`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = testing.tiny_t5_tokenizer(max_length=512)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(0)
    encoder = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                     max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id)).eval()
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32,
                                           n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
                                           axes_dims=[8, 4, 4], axes_lens=[256, 32, 32]).eval()
    return _quiet(ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                 vae=testing._vae(0, scaling_factor=0.3611, shift_factor=0.1159),
                                 text_encoder=encoder, tokenizer=tokenizer, transformer=transformer))


def cascade_prior():
    """StableCascadePriorPipeline: its "latents" are image embeddings (16 x 24 x 24 for 1024 px) for the
    decoder stage; it has no decoder, so its runs record x_t without previews."""
    from diffusers import DDPMWuerstchenScheduler, StableCascadePriorPipeline, StableCascadeUNet

    tokenizer = testing.tiny_tokenizer()
    torch.manual_seed(0)
    prior = StableCascadeUNet(in_channels=4, out_channels=4, timestep_ratio_embedding_dim=8, patch_size=1,
                              conditioning_dim=32, block_out_channels=(16, 16), num_attention_heads=(2, 2),
                              down_num_layers_per_block=(1, 1), up_num_layers_per_block=(1, 1),
                              clip_text_in_channels=32, clip_text_pooled_in_channels=32, clip_seq=1,
                              clip_image_in_channels=32, dropout=(0.0, 0.0), switch_level=(False,),
                              kernel_size=3).eval()
    return _quiet(StableCascadePriorPipeline(tokenizer=tokenizer,
                                             text_encoder=testing._text_encoder(tokenizer, 32, projection=32),
                                             prior=prior, scheduler=DDPMWuerstchenScheduler()))


def paella_vqgan():
    """The decoder Stable Cascade keeps under `vqgan` (a PaellaVQModel, 4x down)."""
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel

    torch.manual_seed(0)
    return PaellaVQModel(up_down_scale_factor=2, levels=2, bottleneck_blocks=1, embed_dim=16, latent_channels=4,
                         num_vq_embeddings=16).eval()


def chroma():
    """ChromaPipeline: Flux-like packed latents (its own _unpack_latents), a T5 encoder, no pooled CLIP."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = testing.tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=(4, 4, 8), approximator_num_channels=8,
                                           approximator_hidden_dim=32, approximator_layers=1).eval()
    pipe = ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), transformer=transformer,
                          vae=testing._vae(0, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159,
                                           use_quant_conv=False, use_post_quant_conv=False),
                          text_encoder=testing._t5_encoder(tokenizer, 32), tokenizer=tokenizer)
    return _quiet(pipe)


def chroma_img2img():
    return _img2img("ChromaImg2ImgPipeline", chroma)


def sana_sprint():
    """SanaSprintPipeline: sana()'s parts with a guidance-embedding DiT and the SCM (trigflow) sampler."""
    from diffusers import SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler

    base = sana()
    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=4,
                                         num_layers=1, num_cross_attention_heads=2, cross_attention_head_dim=4,
                                         cross_attention_dim=8, caption_channels=32, sample_size=32, patch_size=1,
                                         guidance_embeds=True, qk_norm="rms_norm_across_heads").eval()
    return _quiet(SanaSprintPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                                     transformer=transformer, scheduler=SCMScheduler()))


def qwenimage():
    """QwenImagePipeline: a video-style VAE (5-D latents), latents packed 2 x 2 into tokens that unpack to
    5-D: nbdiffuse cannot show them as a picture, so its runs have no previews (said in one line)."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = testing.tiny_t5_tokenizer(max_length=1024)
    torch.manual_seed(0)
    encoder = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                     max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id)).eval()
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=1,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                              axes_dims_rope=(4, 6, 6)).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4).eval()
    return _quiet(QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=encoder,
                                    tokenizer=tokenizer, transformer=transformer))


def _qwen3_config(tokenizer, hidden: int, layers: int, positions: int):
    """A tiny Qwen 3 configuration (2 heads of 8, one key/value head) over `tokenizer`; seeds torch."""
    from transformers import Qwen3Config

    torch.manual_seed(0)
    return Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                       max_position_embeddings=positions, pad_token_id=tokenizer.pad_token_id)


def _qwen3_encoder(tokenizer, hidden: int = 16, layers: int = 2):
    """A small decoder-only text encoder read through its hidden states (a Qwen 3 model, random weights)."""
    from transformers import Qwen3Model

    return Qwen3Model(_qwen3_config(tokenizer, hidden, layers, 2048)).eval()


def lumina2():
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    tokenizer = testing.tiny_t5_tokenizer(max_length=256)
    torch.manual_seed(0)
    transformer = Lumina2Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, hidden_size=32, num_layers=1,
                                            num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1,
                                            multiple_of=16, axes_dim_rope=(4, 6, 6), axes_lens=(300, 64, 64),
                                            cap_feat_dim=16).eval()
    return _quiet(Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                  vae=_vae8(scaling_factor=0.3611, shift_factor=0.1159),
                                  text_encoder=_qwen3_encoder(tokenizer), tokenizer=tokenizer))


def cogview4():
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = testing.tiny_t5_tokenizer(max_length=1024)
    torch.manual_seed(0)
    transformer = CogView4Transformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                             attention_head_dim=4, num_attention_heads=4, text_embed_dim=16,
                                             time_embed_dim=8, condition_dim=4, pos_embed_max_size=16,
                                             sample_size=8, rope_axes_dim=(2, 2)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256,
                                                use_dynamic_shifting=True, time_shift_type="linear")
    return _quiet(CogView4Pipeline(tokenizer=tokenizer, text_encoder=_qwen3_encoder(tokenizer),
                                   vae=testing._vae(0), transformer=transformer, scheduler=scheduler))


def hunyuan_dit():
    """HunyuanDiTPipeline: a BERT and a T5 encoder, a DiT with learned sigma."""
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel, BertTokenizerFast

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(33, 127)]
        path = f"{tmp}/vocab.txt"
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n".join(vocab))
        bert_tokenizer = BertTokenizerFast(path, model_max_length=77)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)).eval()
    t5_tokenizer = testing.tiny_t5_tokenizer(max_length=256)
    torch.manual_seed(0)
    transformer = HunyuanDiT2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2,
                                    sample_size=8, hidden_size=16, num_layers=2, mlp_ratio=1.0,
                                    cross_attention_dim=32, cross_attention_dim_t5=32, pooled_projection_dim=16,
                                    text_len=77, text_len_t5=256).eval()
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.03,
                              prediction_type="v_prediction", steps_offset=1, clip_sample=False)
    return _quiet(HunyuanDiTPipeline(vae=_vae8(), text_encoder=bert, tokenizer=bert_tokenizer,
                                     transformer=transformer, scheduler=scheduler, safety_checker=None,
                                     feature_extractor=None, requires_safety_checker=False,
                                     text_encoder_2=testing._t5_encoder(t5_tokenizer, 32), tokenizer_2=t5_tokenizer))


def lumina():
    """LuminaPipeline (Lumina-Next): a Gemma text encoder read through its hidden states, a DiT with learned sigma."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LuminaNextDiT2DModel, LuminaPipeline
    from transformers import GemmaConfig, GemmaModel

    tokenizer = testing.tiny_t5_tokenizer(max_length=256)
    torch.manual_seed(0)
    encoder = GemmaModel(GemmaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                     max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)).eval()
    torch.manual_seed(0)
    transformer = LuminaNextDiT2DModel(sample_size=4, patch_size=2, in_channels=4, hidden_size=16, num_layers=1,
                                       num_attention_heads=2, num_kv_heads=1, multiple_of=16, learn_sigma=True,
                                       qk_norm=True, cross_attention_dim=16).eval()
    return _quiet(LuminaPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                 vae=_vae8(), text_encoder=encoder, tokenizer=tokenizer))


def qwenimage_img2img():
    return _img2img("QwenImageImg2ImgPipeline", qwenimage)


def sana_sprint_img2img():
    return _img2img("SanaSprintImg2ImgPipeline", sana_sprint)



def bria():
    """BriaPipeline: Flux-like packed latents, a T5 encoder only."""
    from diffusers import BriaPipeline, BriaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = testing.tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = BriaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         axes_dims_rope=[4, 4, 8]).eval()
    vae = testing._vae(0, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                       use_post_quant_conv=False)
    return _quiet(BriaPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                               text_encoder=testing._t5_encoder(tokenizer, 32), tokenizer=tokenizer))
