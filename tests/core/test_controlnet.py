"""ControlNet in nbdiffuse's own loop (core/controlnet.py): parity with diffusers' ControlNet pipelines,
control scale as a schedule and live, its strength per step, branch, save/load and bad input."""
import numpy as np
import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.nbd_schema import TrajectoryFileError

PROMPT = "big red circle on the left"


def control_picture(side=16, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8))


def bare_latents(pipe, image, steps, guidance, seed=0, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, image=image, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                output_type="latent", **kw).images[0]


@pytest.mark.parametrize("fixture", ["sd_controlnet_pipe", "sdxl_controlnet_pipe"])
@pytest.mark.parametrize("guidance, scale, start, end", [(5.0, 1.0, 0.0, 1.0), (1.0, 0.7, 0.2, 0.8),
                                                         (7.5, 1.3, 0.25, 0.6)])
def test_trace_matches_diffusers_controlnet_bit_for_bit(fixture, guidance, scale, start, end, request):
    pipe = request.getfixturevalue(fixture)
    picture = control_picture()
    traj = nbd.trace(pipe, PROMPT, steps=6, guidance=guidance, seed=3, control_image=picture, control_scale=scale,
                     control_start=start, control_end=end)
    expected = bare_latents(pipe, picture, 6, guidance, seed=3, controlnet_conditioning_scale=scale,
                            control_guidance_start=start, control_guidance_end=end)
    assert torch.equal(traj.final_latents, expected)
    acting = [start <= k / 6 and (k + 1) / 6 <= end for k in range(6)]
    assert [s.control_strength > 0 for s in traj.steps] == acting
    assert [s.control_scale for s in traj.steps] == [scale] * 6
    assert traj.params["control"]["start"] == start and traj.params["control"]["scale"] == [scale] * 6


@pytest.mark.parametrize("fixture", ["sd_controlnet_pipe", "sdxl_controlnet_pipe"])
@pytest.mark.parametrize("guidance, scale, start, end", [(5.0, 1.0, 0.0, 1.0), (1.0, 0.7, 0.0, 1.0),
                                                         (7.5, 1.3, 0.25, 0.6)])
def test_guess_mode_matches_diffusers_bit_for_bit(fixture, guidance, scale, start, end, request):
    pipe = request.getfixturevalue(fixture)
    picture = control_picture()
    run = dict(steps=6, guidance=guidance, seed=3, control_image=picture, control_scale=scale,
               control_start=start, control_end=end)
    traj = nbd.trace(pipe, PROMPT, control_guess_mode=True, **run)
    expected = bare_latents(pipe, picture, 6, guidance, seed=3, controlnet_conditioning_scale=scale,
                            control_guidance_start=start, control_guidance_end=end, guess_mode=True)
    assert torch.equal(traj.final_latents, expected)
    assert traj.params["control"]["guess_mode"] is True
    plain = nbd.trace(pipe, PROMPT, **run)
    assert plain.params["control"]["guess_mode"] is False
    assert not torch.equal(plain.final_latents, traj.final_latents)  # guess mode is another run


def test_a_global_pool_controlnet_runs_in_guess_mode_as_diffusers_does(sd_controlnet_pipe):
    from diffusers import StableDiffusionControlNetPipeline

    net = type(sd_controlnet_pipe.controlnet).from_config(sd_controlnet_pipe.controlnet.config,
                                                          global_pool_conditions=True)
    net.load_state_dict(sd_controlnet_pipe.controlnet.state_dict())
    pipe = StableDiffusionControlNetPipeline.from_pipe(sd_controlnet_pipe, controlnet=net.eval())
    picture = control_picture()
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=5.0, seed=1, control_image=picture)
    assert traj.params["control"]["guess_mode"] is True  # diffusers: guess_mode or global_pool_conditions
    assert torch.equal(traj.final_latents, bare_latents(pipe, picture, 4, 5.0, seed=1))
    assert all(s.control_strength > 0 for s in traj.steps)


def test_guess_mode_is_kept_by_branches_and_files(sd_controlnet_pipe, tmp_path):
    run = dict(steps=4, guidance=5.0, seed=2, control_image=control_picture())
    traj = nbd.trace(sd_controlnet_pipe, PROMPT, control_guess_mode=True, **run)
    child = nbd.branch(sd_controlnet_pipe, traj, at=1)
    assert child.params["control"]["guess_mode"] is True and torch.equal(child.final_latents, traj.final_latents)
    off = nbd.branch(sd_controlnet_pipe, traj, at=1, control_guess_mode=False)
    assert off.params["control"]["guess_mode"] is False and not torch.equal(off.final_latents, traj.final_latents)
    traj.save(tmp_path / "run.nbd")
    assert nbd.Trajectory.load(tmp_path / "run.nbd").params["control"]["guess_mode"] is True


def test_control_changes_the_run_and_scale_zero_is_the_plain_model(sd_controlnet_pipe):
    from diffusers import StableDiffusionPipeline

    plain = StableDiffusionPipeline.from_pipe(sd_controlnet_pipe)
    base = nbd.trace(plain, PROMPT, steps=5, guidance=5.0, seed=2)
    off = nbd.trace(sd_controlnet_pipe, PROMPT, steps=5, guidance=5.0, seed=2, control_image=control_picture(),
                    control_scale=0.0)
    on = nbd.trace(sd_controlnet_pipe, PROMPT, steps=5, guidance=5.0, seed=2, control_image=control_picture())
    assert torch.equal(off.final_latents, base.final_latents)
    assert all(s.control_strength == 0.0 for s in off.steps)
    assert not torch.equal(on.final_latents, base.final_latents)
    # a ControlNet pipeline without a control picture runs the plain model
    none = nbd.trace(sd_controlnet_pipe, PROMPT, steps=5, guidance=5.0, seed=2)
    assert torch.equal(none.final_latents, base.final_latents) and "control" not in none.params
    assert none[0].control_strength is None


def test_a_scale_per_step_a_callable_and_the_window_agree(sd_controlnet_pipe):
    picture = control_picture()
    run = dict(steps=6, guidance=5.0, seed=1, control_image=picture)
    window = nbd.trace(sd_controlnet_pipe, PROMPT, control_start=0.0, control_end=0.5, **run)
    per_step = nbd.trace(sd_controlnet_pipe, PROMPT, control_scale=[1, 1, 1, 0, 0, 0], **run)
    called = nbd.trace(sd_controlnet_pipe, PROMPT, control_scale=lambda k: 1.0 if k < 3 else 0.0, **run)
    assert torch.equal(window.final_latents, per_step.final_latents)
    assert torch.equal(window.final_latents, called.final_latents)
    assert [s.control_strength for s in window.steps] == [s.control_strength for s in per_step.steps]


def test_control_scale_changes_live(sd_controlnet_pipe):
    picture = control_picture()
    control = nbd.RunControl()

    def on_step(traj, step):
        if step.index == 2:
            control.set_control_scale(0.0)

    live = nbd.trace(sd_controlnet_pipe, PROMPT, steps=6, guidance=5.0, seed=1, control_image=picture,
                     control=control, on_step=on_step)
    planned = nbd.trace(sd_controlnet_pipe, PROMPT, steps=6, guidance=5.0, seed=1, control_image=picture,
                        control_scale=[1, 1, 1, 0, 0, 0])
    assert torch.equal(live.final_latents, planned.final_latents)
    assert live.params["control"]["scale"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert live.params["control"]["scale_plan"] == [1.0] * 6
    control.clear_control_scale()
    assert control.control_scale is None


def test_branch_without_control_from_a_step(sd_controlnet_pipe):
    picture = control_picture()
    traj = nbd.trace(sd_controlnet_pipe, PROMPT, steps=6, guidance=5.0, seed=1, control_image=picture)
    same = nbd.branch(sd_controlnet_pipe, traj, 2)
    assert torch.equal(same.final_latents, traj.final_latents)
    off = nbd.branch(sd_controlnet_pipe, traj, 2, control_scale=0.0)
    planned = nbd.trace(sd_controlnet_pipe, PROMPT, steps=6, guidance=5.0, seed=1, control_image=picture,
                        control_scale=[1, 1, 1, 0, 0, 0])
    assert torch.equal(off.final_latents, planned.final_latents)
    assert off.params["control"]["scale"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert [s.control_strength for s in off.steps[3:]] == [0.0] * 3
    # control added from a step to a run that had none; the what-if of a ControlNet step
    plain = nbd.trace(sd_controlnet_pipe, PROMPT, steps=6, guidance=5.0, seed=1)
    added = nbd.branch(sd_controlnet_pipe, plain, 2, control_image=picture)
    assert added.params["control"]["scale"] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert not torch.equal(added.final_latents, plain.final_latents)
    assert traj.guided_x0(3, 5.0).shape == traj[3].pred_x0.shape


def test_save_and_load_keep_the_control(sd_controlnet_pipe, tmp_path):
    picture = control_picture()
    traj = nbd.trace(sd_controlnet_pipe, PROMPT, steps=5, guidance=5.0, seed=1, control_image=picture,
                     control_scale=0.8, control_start=0.2)
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    loaded = nbd.Trajectory.load(path)
    assert loaded.params["control"] == traj.params["control"]
    assert np.array_equal(np.asarray(loaded.control_image), np.asarray(picture))
    assert [s.control_strength for s in loaded.steps] == [s.control_strength for s in traj.steps]
    assert [s.control_scale for s in loaded.steps] == [0.8] * 5
    a = nbd.branch(sd_controlnet_pipe, traj, 1, control_scale=0.3)
    b = nbd.branch(sd_controlnet_pipe, loaded, 1, control_scale=0.3)
    assert torch.equal(a.final_latents, b.final_latents)


def test_a_file_with_a_bad_control_is_refused(sd_controlnet_pipe, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    traj = nbd.trace(sd_controlnet_pipe, PROMPT, steps=3, guidance=5.0, seed=1, control_image=control_picture())
    path = tmp_path / "run.nbd"
    traj.save(path, frames=False)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    tensors = load_file(str(path))
    bad = dict(tensors, control_image=torch.zeros((4, 4, 3), dtype=torch.uint8))
    save_file(bad, str(tmp_path / "shape.nbd"), metadata=header)
    with pytest.raises(TrajectoryFileError, match="control_image"):
        nbd.Trajectory.load(tmp_path / "shape.nbd")
    meta = json.loads(header["meta"])
    meta["params"]["control"]["scale"][0] = 1e9
    save_file(tensors, str(tmp_path / "scale.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match=r"params\.control\.scale\[0\] must be a number from 0 to 10"):
        nbd.Trajectory.load(tmp_path / "scale.nbd")
    meta = json.loads(header["meta"])
    meta["params"]["control"]["guess_mode"] = "yes"
    save_file(tensors, str(tmp_path / "guess.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match=r"params\.control\.guess_mode must be true or false"):
        nbd.Trajectory.load(tmp_path / "guess.nbd")
    del meta["params"]["control"]["guess_mode"]  # a file from before guess mode: off
    save_file(tensors, str(tmp_path / "older.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    assert not nbd.Trajectory.load(tmp_path / "older.nbd").params["control"].get("guess_mode")
    meta["params"]["control"]["mode"] = "canny"  # a union ControlNet's kind of picture is a number
    save_file(tensors, str(tmp_path / "mode.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match=r"params\.control\.mode must be an integer from 0"):
        nbd.Trajectory.load(tmp_path / "mode.nbd")


def test_the_run_takes_the_control_pictures_size(sd_controlnet_pipe):
    traj = nbd.trace(sd_controlnet_pipe, PROMPT, steps=2, guidance=5.0, control_image=control_picture(side=24))
    assert (traj.params["height"], traj.params["width"]) == (24, 24)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"control_scale": -1.0}, ValueError, "control_scale must be a number from 0 to 10"),
    ({"control_scale": "strong"}, TypeError, "control_scale must be"),
    ({"control_scale": [1.0, 2.0]}, ValueError, "control_scale schedule must have one value per step"),
    ({"control_scale": float("nan")}, ValueError, "control_scale"),
    ({"control_start": 0.6, "control_end": 0.5}, ValueError, "control_start must be below control_end"),
    ({"control_end": 1.5}, ValueError, "control_end must be a number from 0 to 1"),
    ({"control_start": None}, TypeError, "control_start must be a number from 0 to 1"),
    ({"control_image": 5}, TypeError, "control_image must be a PIL.Image"),
    ({"control_image": None, "control_scale": 0.5}, ValueError, "control_scale=0.5 needs a control picture"),
    ({"control_guess_mode": 1}, TypeError, "control_guess_mode must be True or False, got 1"),
    ({"control_image": None, "control_guess_mode": True}, ValueError, "control_guess_mode=True needs a control picture"),
])
def test_bad_control_arguments_name_themselves(sd_controlnet_pipe, kwargs, error, words):
    kwargs = {"control_image": control_picture(), **kwargs}
    with pytest.raises(error, match=words):
        nbd.trace(sd_controlnet_pipe, PROMPT, steps=3, **kwargs)


def test_control_needs_a_controlnet_pipeline(sd_pipe):
    with pytest.raises(ValueError, match="control_image needs a ControlNet pipeline"):
        nbd.trace(sd_pipe, PROMPT, steps=2, control_image=control_picture())
    with pytest.raises(ValueError, match="control_scale"):
        nbd.RunControl().set_control_scale(11)


def test_load_pipeline_joins_a_controlnet_folder(sd_controlnet_pipe, tmp_path):
    from nbdiffuse.testing import tiny_sd_pipeline

    tiny_sd_pipeline().save_pretrained(tmp_path / "model")
    sd_controlnet_pipe.controlnet.save_pretrained(tmp_path / "controlnet")
    pipe = nbd.load_pipeline(str(tmp_path / "model"), controlnet=str(tmp_path / "controlnet"))
    assert type(pipe).__name__ == "StableDiffusionControlNetPipeline"
    picture = control_picture()
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=5.0, control_image=picture)
    expected = nbd.trace(sd_controlnet_pipe, PROMPT, steps=3, guidance=5.0, control_image=picture)
    assert torch.equal(traj.final_latents, expected.final_latents)
    assert traj.params["control"]["model"] == str(tmp_path / "controlnet")
    with pytest.raises(TypeError, match="controlnet must be a ControlNet folder"):
        nbd.load_pipeline(str(tmp_path / "model"), controlnet=3)
    with pytest.raises(ValueError, match="controlnet="):
        nbd.load_pipeline(str(tmp_path / "model"), controlnet=str(tmp_path / "model"))
