"""Issue 21 E4: the size a run makes when given none, for any pipeline nbdiffuse can run."""
import pytest
from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

from nbdiffuse.core.capabilities import default_size
from nbdiffuse.testing import _vae


def test_default_sizes_as_each_pipeline_decides_them(sd_pipe, flux_pipe, generic_pipe):
    # ZImagePipeline's __call__ falls back to `height or 1024` in its body (its parts are not needed to tell)
    zimage = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(), text_encoder=None,
                            tokenizer=None, transformer=None)
    assert default_size(zimage) == (1024, 1024)
    assert default_size(sd_pipe) == (16, 16)  # the UNet's sample_size times the VAE's factor
    assert default_size(flux_pipe) == (32, 32)  # default_sample_size 16 times 2
    assert default_size(generic_pipe) == (16, 16)


def test_a_pipeline_nbdiffuse_cannot_run_has_no_default_size():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    pipe = DDPMPipeline(unet=UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
                                         down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2),
                        scheduler=DDPMScheduler())
    with pytest.raises(TypeError, match="DDPMPipeline"):
        default_size(pipe)
