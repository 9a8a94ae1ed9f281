"""Issue 21 E6: refusals say what runs (the families and the callback path) and why this pipeline does not."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.families import adapter_for, is_generic


def tiny_kandinsky22():
    """A KandinskyV22Pipeline (a movq decoder, a UNet conditioned on image embeddings): no prompt."""
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=8, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("ResnetDownsampleBlock2D",
                                                                               "SimpleCrossAttnDownBlock2D"),
                                up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                                mid_block_type="UNetMidBlock2DSimpleCrossAttn", addition_embed_type="image",
                                encoder_hid_dim=32, encoder_hid_dim_type="image_proj", cross_attention_dim=32,
                                attention_head_dim=8, resnet_time_scale_shift="scale_shift", class_embed_type=None,
                                norm_num_groups=16)
    movq = VQModel(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                   up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"), in_channels=3, out_channels=3,
                   latent_channels=4, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=12, vq_embed_dim=4)
    return KandinskyV22Pipeline(unet=unet, scheduler=DDPMScheduler(), movq=movq)


def test_a_pipeline_without_a_prompt_is_refused_up_front():
    pipe = tiny_kandinsky22()
    assert not is_generic(pipe)
    for call in (lambda: nbd.trace(pipe, "a cat", steps=2), lambda: adapter_for(pipe)):
        with pytest.raises(TypeError) as err:
            call()
        text = str(err.value)
        assert "KandinskyV22Pipeline.__call__ takes no prompt (it needs image_embeds, negative_image_embeds)" in text
        assert "StableDiffusionPipeline" in text and "callback_on_step_end" in text


def test_a_pipeline_without_a_step_callback_names_both_ways():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    pipe = DDPMPipeline(unet=UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
                                         down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2),
                        scheduler=DDPMScheduler())
    with pytest.raises(TypeError, match=r"FluxPipeline.*got DDPMPipeline: DDPMPipeline.__call__ takes no callback_on_step_end.*"
                                        r"Other pipelines work too"):
        nbd.trace(pipe, "a cat", steps=2)
