"""trace(control_image=...) on a ControlNet pipeline that runs its own loop (core/generic_control.py): the picture
and settings reach pipe(...) under its own names, bit for bit; the run records them and keeps the pictures; what
the pipeline cannot take is refused by name."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nbdiffuse as nbd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline_zoo"))
import builders_control  # noqa: E402

from control_helpers import picture as noise_picture  # noqa: E402

PROMPT = "a red circle"


def picture(seed, side=32):
    return noise_picture(seed, side)


@pytest.fixture(scope="module")
def qwen_controlnet():
    return builders_control.qwenimage_controlnet()


def reference(pipe, steps=2, seed=0, **kwargs):
    """What QwenImageControlNetPipeline returns itself: its packed latents."""
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=4.0, height=32, width=32, output_type="latent",
                generator=torch.Generator().manual_seed(seed), **kwargs).images[0]


def test_a_controlnet_pipeline_gets_the_picture_and_settings_under_its_own_names(qwen_controlnet, tmp_path):
    pipe, control = qwen_controlnet, picture(1)
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=4.0, height=32, width=32, control_image=control,
                     control_scale=0.7, control_start=0.0, control_end=0.5)
    expected = reference(pipe, steps=3, control_image=control, controlnet_conditioning_scale=0.7,
                         control_guidance_start=0.0, control_guidance_end=0.5)
    assert torch.equal(traj.output_latents, expected)
    settings = traj.params["control"]
    assert settings["scale"] == [0.7] * 3 and settings["end"] == 0.5 and settings["model"] == "QwenImageControlNetModel"
    assert [s.control_scale for s in traj] == [0.7] * 3 and all(s.control_strength is None for s in traj)
    assert not torch.equal(traj.final_latents, nbd.trace(pipe, PROMPT, steps=3, guidance=4.0, height=32, width=32,
                                                         control_image=picture(2), control_scale=0.7,
                                                         control_end=0.5).final_latents)  # the picture steers
    traj.save(tmp_path / "qwen.nbd")
    back = nbd.Trajectory.load(tmp_path / "qwen.nbd")
    assert np.array_equal(np.asarray(back.control_image), np.asarray(control))
    assert back.params["control"] == settings
    assert back.has_x0 and all(torch.equal(a.pred_x0, b.pred_x0) for a, b in zip(traj, back))
    with pytest.raises(ValueError, match=r"QwenImageControlNetPipeline\) runs its own loop.*branching needs a family"):
        nbd.branch(pipe, traj, at=0, control_scale=0.0)


def test_the_pipelines_own_default_scale_when_none_is_given():
    pipe = builders_control.sd_controlnet_img2img()  # its controlnet_conditioning_scale defaults to 0.8
    start, control = picture(0, 16), picture(1, 16)
    run = dict(steps=2, guidance=7.5, height=16, width=16, image=start, strength=0.6, control_image=control)
    traj = nbd.trace(pipe, PROMPT, **run)
    assert traj.params["control"]["scale"] == [0.8]
    out = pipe(PROMPT, image=start, strength=0.6, control_image=control, num_inference_steps=2, guidance_scale=7.5,
               height=16, width=16, output_type="latent", generator=torch.Generator().manual_seed(0)).images[0]
    assert torch.equal(traj.final_latents, out)
    assert not torch.equal(nbd.trace(pipe, PROMPT, control_scale=1.0, **run).final_latents, out)


def test_several_controlnets_take_a_list_per_setting():
    from diffusers import HunyuanDiT2DMultiControlNetModel, HunyuanDiTControlNetPipeline

    from nbdiffuse.testing import seeded_weights

    one = builders_control.hunyuan_dit_controlnet()  # its own loop
    torch.manual_seed(1)
    other = type(one.controlnet)(**{k: v for k, v in one.controlnet.config.items() if not k.startswith("_")})
    seeded_weights([*other.controlnet_blocks, other.input_block], seed=1)
    pipe = HunyuanDiTControlNetPipeline.from_pipe(one, controlnet=HunyuanDiT2DMultiControlNetModel([one.controlnet,
                                                                                                   other.eval()]))
    pipe.set_progress_bar_config(disable=True)
    pictures = [picture(1), picture(2)]
    run = dict(steps=2, guidance=5.0, height=32, width=32, control_image=pictures)
    traj = nbd.trace(pipe, PROMPT, control_scale=[0.7, 0.4], **run)
    torch.manual_seed(0)  # as a trace seeds torch's global RNG on the generic path
    out = pipe(PROMPT, control_image=pictures, num_inference_steps=2, guidance_scale=5.0, height=32, width=32,
               output_type="latent", generator=torch.Generator().manual_seed(0), use_resolution_binning=False,
               controlnet_conditioning_scale=[0.7, 0.4]).images[0]
    assert traj.params["family"] == "generic" and torch.equal(traj.final_latents, out)
    assert traj.params["control"]["nets"] == 2 and [s.control_scale for s in traj] == [[0.7, 0.4]] * 2
    assert not torch.equal(nbd.trace(pipe, PROMPT, control_scale=[0.7, 0.0], **run).final_latents, out)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"control_scale": [1.0, 0.5]}, ValueError, "control_scale must be one number for QwenImageControlNetPipeline"),
    ({"control_scale": lambda k: 1.0}, ValueError, "reads controlnet_conditioning_scale once"),
    ({"control_guess_mode": True}, ValueError, "control_guess_mode=True: QwenImageControlNetPipeline takes no guess_mode"),
    ({"control_end": 1.5}, ValueError, "control_end must be a number from 0 to 1"),
    ({"control_image": None, "control_scale": 0.5}, ValueError, "control_scale=0.5 needs a control picture"),
])
def test_what_the_pipeline_cannot_take_is_refused_by_name(qwen_controlnet, kwargs, error, words):
    given = {"control_image": picture(1), **kwargs}
    with pytest.raises(error, match=words):
        nbd.trace(qwen_controlnet, PROMPT, steps=2, guidance=4.0, height=32, width=32, **given)


def test_a_pipeline_without_a_control_picture_refuses_one():
    from nbdiffuse.testing import tiny_cogview3plus_pipeline

    with pytest.raises(ValueError, match="control_image: CogView3PlusPipeline takes no control picture"):
        nbd.trace(tiny_cogview3plus_pipeline(), PROMPT, steps=2, height=32, width=32, control_image=picture(1))


def test_a_live_control_scale_is_noted_as_ignored(qwen_controlnet):
    control = nbd.RunControl()
    control.set_control_scale(0.0)
    traj = nbd.trace(qwen_controlnet, PROMPT, steps=2, guidance=4.0, height=32, width=32, control_image=picture(1),
                     control=control)
    assert any(n.startswith("live control scale ignored") for n in traj.notices), traj.notices
    assert [s.control_scale for s in traj] == [1.0, 1.0]  # what the pipeline ran at


def test_control_mode_needs_a_union_controlnet():
    with pytest.raises(ValueError, match=r"control_mode=1: CogView4ControlPipeline has no union ControlNet"):
        nbd.trace(builders_control.cogview4_control(), PROMPT, steps=2, height=16, width=16,
                  control_image=picture(1, 16), control_mode=1)


def test_a_pipeline_that_draws_from_the_global_rng_runs_the_same_from_its_seed_and_leaves_it_alone():
    """CogView4ControlPipeline samples its control latents from torch's global RNG: a trace seeds it with the
    run's seed for the call (equal to torch.manual_seed(seed); pipe(...)) and puts the notebook's back."""
    pipe = builders_control.cogview4_control()
    control = picture(1, 16)
    run = dict(steps=2, guidance=3.5, seed=5, height=16, width=16, control_image=control)
    torch.manual_seed(123)
    first = nbd.trace(pipe, PROMPT, **run)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the notebook's random state as if no run had been made
    assert torch.equal(nbd.trace(pipe, PROMPT, **run).final_latents, first.final_latents)
    torch.manual_seed(5)
    out = pipe(PROMPT, control_image=control, num_inference_steps=2, guidance_scale=3.5, height=16, width=16,
               output_type="latent", generator=torch.Generator().manual_seed(5)).images[0]
    assert torch.equal(first.final_latents, out)


@pytest.mark.parametrize("build, side, expected", [("hunyuan_dit_controlnet", 48, 64), ("sd_controlnet_xs", 24, 24)])
def test_without_a_size_a_run_takes_the_size_its_pipeline_would(build, side, expected):
    """HunyuanDiT's falls back to its own size (`height = height or ...`); ControlNet-XS takes the picture's."""
    from nbdiffuse.core.generic_control import control_parameter

    pipe = getattr(builders_control, build)()
    hint = picture(4, side)
    traj = nbd.trace(pipe, PROMPT, steps=2, guidance=5.0, control_image=hint)
    assert (traj.params["height"], traj.params["width"]) == (expected, expected)
    import inspect

    accepted = inspect.signature(type(pipe).__call__).parameters
    kwargs = {"use_resolution_binning": False} if "use_resolution_binning" in accepted else {}
    torch.manual_seed(0)  # as a trace seeds torch's global RNG on the generic path
    out = pipe(PROMPT, num_inference_steps=2, guidance_scale=5.0, output_type="latent",
               generator=torch.Generator().manual_seed(0), **{control_parameter(pipe, accepted): hint},
               **kwargs).images[0]
    assert torch.equal(traj.final_latents, out)
