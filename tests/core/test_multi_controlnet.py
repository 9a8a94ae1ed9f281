"""Several ControlNets at once (diffusers' MultiControlNetModel) in nbdiffuse's own loop: parity with
diffusers' pipelines, a setting per ControlNet, branches, files, loading and bad input by name."""
import json

import numpy as np
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.nbd_schema import TrajectoryFileError
from test_controlnet import PROMPT, bare_latents, control_picture



def picture(seed, side=16):
    return control_picture(side, seed)


@pytest.mark.parametrize("fixture", ["sd_multi_controlnet_pipe", "sdxl_multi_controlnet_pipe"])
@pytest.mark.parametrize("guidance, scale, start, end, guess", [
    (5.0, [1.0, 0.6], [0.0, 0.3], [1.0, 0.8], False),  # a scale and a window per ControlNet
    (1.0, 0.7, 0.2, [0.6, 1.0], False),  # one scale and one start for both, an end each
    (7.5, [1.3, 0.0], 0.0, 1.0, False),  # the second at scale 0: not run, the same numbers
    (5.0, [0.8, 1.2], [0.0, 0.5], 1.0, True),  # guess mode
])
def test_several_controlnets_match_diffusers_bit_for_bit(fixture, guidance, scale, start, end, guess, request):
    pipe = request.getfixturevalue(fixture)
    images = [picture(0), picture(1)]
    traj = nbd.trace(pipe, PROMPT, steps=6, guidance=guidance, seed=3, control_image=images, control_scale=scale,
                     control_start=start, control_end=end, control_guess_mode=guess)
    expected = bare_latents(pipe, images, 6, guidance, seed=3, controlnet_conditioning_scale=scale,
                            control_guidance_start=start, control_guidance_end=end, guess_mode=guess)
    assert torch.equal(traj.final_latents, expected)
    scales = scale if isinstance(scale, list) else [scale] * 2
    assert [s.control_scale for s in traj.steps] == [scales] * 6
    control = traj.params["control"]
    assert control["nets"] == 2 and control["scale"] == [scales] * 6 and len(control["model"]) == 2
    assert control["start"] == (start if isinstance(start, list) else [start] * 2)
    assert control["guess_mode"] is guess and len(traj.control_image) == 2


def test_each_controlnet_counts_and_a_scale_per_step_per_controlnet(sd_multi_controlnet_pipe):
    pipe, images = sd_multi_controlnet_pipe, [picture(0), picture(1)]
    run = dict(steps=4, guidance=5.0, seed=2, control_image=images)
    both = nbd.trace(pipe, PROMPT, **run)
    first = nbd.trace(pipe, PROMPT, control_scale=[1.0, 0.0], **run)
    second = nbd.trace(pipe, PROMPT, control_scale=[0.0, 1.0], **run)
    finals = [t.final_latents for t in (both, first, second)]
    assert not torch.equal(finals[0], finals[1]) and not torch.equal(finals[0], finals[2])
    assert not torch.equal(finals[1], finals[2])  # each ControlNet reads its own picture
    # per ControlNet: a number, a schedule of one number per step, a callable
    traj = nbd.trace(pipe, PROMPT, control_scale=[[1.0, 0.5, 0.5, 0.0], lambda k: 0.25 * k], **run)
    assert [s.control_scale for s in traj.steps] == [[1.0, 0.0], [0.5, 0.25], [0.5, 0.5], [0.0, 0.75]]
    control = nbd.RunControl()

    def live(traj, step):
        if step.index == 1:
            control.set_control_scale(0.0)  # live: every ControlNet's scale

    stopped = nbd.trace(pipe, PROMPT, control=control, on_step=live, **run)
    assert [s.control_scale for s in stopped.steps] == [[1.0, 1.0]] * 2 + [[0.0, 0.0]] * 2
    assert [s.control_strength > 0 for s in stopped.steps] == [True, True, False, False]


def test_branches_and_files_keep_every_controlnets_part(sd_multi_controlnet_pipe, tmp_path):
    pipe, images = sd_multi_controlnet_pipe, [picture(0), picture(1, side=24)]
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=5.0, seed=1, control_image=images,
                     control_scale=[1.0, 0.5], control_end=[1.0, 0.5])
    assert (traj.params["height"], traj.params["width"]) == (16, 16)  # the first picture's size, as diffusers
    same = nbd.branch(pipe, traj, at=1)
    assert torch.equal(same.final_latents, traj.final_latents)
    off = nbd.branch(pipe, traj, at=1, control_scale=[0.0, [0.5, 0.5]])  # the first off, the second as it was
    assert [s.control_scale for s in off.steps] == [[1.0, 0.5]] * 2 + [[0.0, 0.5]] * 2
    path = tmp_path / "multi.nbd"
    traj.save(path)
    back = nbd.Trajectory.load(path)
    assert back.params["control"] == traj.params["control"]
    assert [np.array(p).tolist() for p in back.control_image] == [np.array(p).tolist() for p in images]
    again = nbd.branch(pipe, back, at=1)
    assert torch.equal(again.final_latents, traj.final_latents)
    with pytest.raises(ValueError, match=r"made with 2 ControlNet\(s\) and StableDiffusionControlNetPipeline runs 1"):
        from nbdiffuse.testing import tiny_controlnet_pipeline
        nbd.branch(tiny_controlnet_pipeline(), back, at=1)


def test_a_file_with_a_bad_multi_control_is_refused_by_field(sd_multi_controlnet_pipe, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    traj = nbd.trace(sd_multi_controlnet_pipe, PROMPT, steps=2, guidance=5.0, control_image=[picture(0), picture(1)])
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    tensors = load_file(str(path))
    assert "control_image.1" in tensors

    def refused(name, tensors=tensors, meta=None):
        save_file(tensors, str(tmp_path / name), metadata=dict(header, meta=json.dumps(meta)) if meta else header)
        with pytest.raises(TrajectoryFileError) as info:
            nbd.Trajectory.load(tmp_path / name)
        return str(info.value)

    assert "control_image.1" in refused("shape.nbd", dict(tensors, **{"control_image.1": torch.zeros((3, 3, 3),
                                                                                                      dtype=torch.uint8)}))
    assert "control_image.2" in refused("extra.nbd", dict(tensors, **{"control_image.2": tensors["control_image"].clone()}))
    meta = json.loads(header["meta"])
    meta["params"]["control"]["scale"][0] = [1.0]
    assert "params.control.scale[0]" in refused("row.nbd", meta=meta)
    meta = json.loads(header["meta"])
    meta["params"]["control"]["start"] = [0.5, 0.9]
    meta["params"]["control"]["end"] = [1.0, 0.8]
    assert "params.control.start[1]" in refused("window.nbd", meta=meta)
    meta = json.loads(header["meta"])
    meta["steps"][0]["control_scale"] = [1.0, 99.0]
    assert "steps[0].control_scale[1]" in refused("step.nbd", meta=meta)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"control_image": "PICTURE"}, ValueError, r"control_image: this pipeline runs 2 ControlNets \(MultiControlNetModel\):"
                                               r" pass a list of 2 pictures, one per ControlNet; got one picture"),
    ({"control_image": ["P0"]}, ValueError, "pass a list of 2 pictures, one per ControlNet; got a list of 1"),
    ({"control_image": ["P0", 5]}, TypeError, r"control_image\[1\] must be a PIL.Image"),
    ({"control_scale": [1.0, 0.5, 0.2]}, ValueError, "control_scale: this pipeline runs 2 ControlNets"),
    ({"control_scale": [1.0, -1.0]}, ValueError, r"control_scale\[1\] must be a number from 0 to 10"),
    ({"control_start": [0.0, 0.9], "control_end": [1.0, 0.5]}, ValueError,
     r"control_start\[1\] must be below control_end\[1\]"),
    ({"control_end": [1.0]}, ValueError, "control_end: this pipeline runs 2 ControlNets"),
])
def test_bad_multi_control_arguments_name_themselves(sd_multi_controlnet_pipe, kwargs, error, words):
    given = {"control_image": [picture(0), picture(1)], **kwargs}
    swap = {"PICTURE": picture(0), "P0": picture(0)}
    given["control_image"] = (swap.get(given["control_image"]) if isinstance(given["control_image"], str)
                              else [swap.get(p, p) if isinstance(p, str) else p for p in given["control_image"]])
    with pytest.raises(error, match=words):
        nbd.trace(sd_multi_controlnet_pipe, PROMPT, steps=3, **given)


def test_load_pipeline_joins_a_list_of_controlnets(sd_multi_controlnet_pipe, tmp_path):
    from nbdiffuse.testing import tiny_sd_pipeline

    tiny_sd_pipeline().save_pretrained(tmp_path / "model")
    for j, net in enumerate(sd_multi_controlnet_pipe.controlnet.nets):
        net.save_pretrained(tmp_path / f"net{j}")
    pipe = nbd.load_pipeline(str(tmp_path / "model"), controlnet=[str(tmp_path / "net0"), str(tmp_path / "net1")])
    assert type(pipe.controlnet).__name__ == "MultiControlNetModel"
    images = [picture(0), picture(1)]
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=5.0, control_image=images)
    expected = nbd.trace(sd_multi_controlnet_pipe, PROMPT, steps=3, guidance=5.0, control_image=images)
    assert torch.equal(traj.final_latents, expected.final_latents)
    assert traj.params["control"]["model"] == [str(tmp_path / "net0"), str(tmp_path / "net1")]
    one = nbd.load_pipeline(str(tmp_path / "model"), controlnet=[str(tmp_path / "net0")])  # a list of one: one
    assert type(one.controlnet).__name__ == "ControlNetModel"
    with pytest.raises(TypeError, match=r"controlnet\[1\] must be a ControlNet folder"):
        nbd.load_pipeline(str(tmp_path / "model"), controlnet=[str(tmp_path / "net0"), 3])
    with pytest.raises(ValueError, match="got an empty list"):
        nbd.load_pipeline(str(tmp_path / "model"), controlnet=[])
