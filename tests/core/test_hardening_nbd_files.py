"""Hostile .nbd contents: every field is checked against core/nbd_schema.py before anything is built."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import nbdiffuse as nbd
from nbdiffuse.core.trajfile import TrajectoryFileError

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def saved(sd_pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("nbd") / "run.nbd"
    nbd.trace(sd_pipe, PROMPT, steps=3, guidance=3.0, seed=1).save(path)
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return header, tensors


def write(tmp_path, saved, edit=None, tensors_edit=None, name="bad.nbd"):
    header, tensors = dict(saved[0]), dict(saved[1])
    meta = json.loads(header["meta"])
    if edit is not None:
        edit(meta)
    header["meta"] = json.dumps(meta)
    if tensors_edit is not None:
        tensors_edit(tensors)
    path = tmp_path / name
    save_file(tensors, str(path), metadata=header)
    return path


def setp(key, value):
    return lambda meta: meta["params"].__setitem__(key, value)


def dropp(key):
    return lambda meta: meta["params"].pop(key)


def setcfg(key, value):
    return lambda meta: meta["params"]["scheduler_config"].__setitem__(key, value)


def setstep(k, key, value):
    return lambda meta: meta["steps"][k].__setitem__(key, value)


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.__setitem__("params", [1, 2]), "field params must be an object"),
    (lambda m: m.__setitem__("params", "prompt"), "field params must be an object"),
    (lambda m: m.__setitem__("steps", {"0": 1}), "field steps must be a list"),
    (dropp("prompt"), "field params.prompt must be present"),
    (dropp("height"), "field params.height must be present"),
    (setp("width", "wide"), "field params.width must be an integer from 1 to 4096, got 'wide'"),
    (setp("height", 10**6), "field params.height must be an integer from 1 to 4096"),
    (setp("width", 64.0), "field params.width must be an integer"),
    (setp("id", ["a", "b"]), "field params.id must be a run id"),
    (setp("id", "<script>"), "field params.id must be a run id"),
    (setp("prompt", None), "field params.prompt must be text"),
    (setp("prompt", "bad \udc80 text"), "field params.prompt must be text that can be written as UTF-8"),
    (setp("seed", -1), "field params.seed must be an integer from 0"),
    (setp("seed", True), "field params.seed must be an integer"),
    (setp("steps", 0), "field params.steps must be an integer from 1 to 1000"),
    (setp("steps", 2), "field steps must be at most params.steps - start_step = 2"),
    (setp("start_step", 7), "field params.start_step must be an integer from 0 to 2"),
    (setp("guidance", []), "field params.guidance must be a list of 1 to 1000"),
    (setp("guidance", [3.0, {"a": 1}, 3.0]), "params.guidance\\[1\\] must be a number"),
    (setp("guidance_plan", [3.0, -2.0, 3.0]), "params.guidance_plan\\[1\\] must be >= 0"),
    (setp("strength", 0.0), "field params.strength must be a number in \\(0, 1\\]"),
    (setp("strength", 7), "field params.strength must be a number in \\(0, 1\\]"),
    (setp("notices", "truncated"), "field params.notices must be a list"),
    (setp("notices", [3]), "field params.notices\\[0\\] must be text"),
    (setp("capabilities", {"x0": "yes"}), "field params.capabilities.x0 must be true or false"),
    (setp("capabilities", {"fly": True}), "field params.capabilities.fly must be true or false, for one of"),
    (setp("image", {"width": 9000, "height": 8}), "field params.image.width must be an integer from 1 to 4096"),
    (setp("scheduler_class", "os.system"), "field params.scheduler_class must be the class name"),
    (setp("scheduler_class", "Path"), "field params.scheduler_config must be a config Path accepts"),
    (setp("scheduler_config", [1000]), "field params.scheduler_config must be an object"),
    (setcfg("num_train_timesteps", 10**9), "num_train_timesteps must be an integer from 1 to 100000, got 1000000000"),
    (setcfg("num_train_timesteps", 10**10), "num_train_timesteps must be an integer from 1 to 100000"),
    (setcfg("num_train_timesteps", 0), "num_train_timesteps must be an integer from 1 to 100000"),
    (setcfg("solver_order", 10**8), "scheduler_config.solver_order must be an integer from -100000 to 100000"),
    (setcfg("trained_betas", [0.1] * 100_001), "scheduler_config.trained_betas must be a list of 0 to 100000"),
    (setcfg("prediction_type", "banana"), "scheduler_config.prediction_type must be one of epsilon"),
    (setp("prediction_type", 3), "field params.prediction_type must be text"),
    (setcfg("beta_schedule", "wiggly"), "field params.scheduler_config must be a config EulerDiscreteScheduler accepts"),
    (lambda m: m["params"].__setitem__("parent", m["params"]["id"]), "field params.parent must be another run's id"),
    (setp("branched_at", 99), "field params.branched_at must be an integer from 0 to 2"),
    (setp("lora", "x"), "field params.lora must be an object"),
    (setp("lora", {"source": "a", "scale": "strong"}), "field params.lora.scale must be a finite number"),
    (setp("lora", {"adapters": "nbd"}), "field params.lora.adapters must be a list"),
    (setp("lora", {"components": [["unet"]]}), "field params.lora.components\\[0\\] must be text"),
    (setstep(1, "guidance", float("inf")), "field steps\\[1\\].guidance must be a finite number"),
    (setstep(1, "guidance", 1e400), "field steps\\[1\\].guidance must be a finite number"),
    (setstep(0, "sigma", -1.0), "field steps\\[0\\].sigma must be a finite number >= 0"),
    (setstep(0, "timestep", "late"), "field steps\\[0\\].timestep must be a finite number"),
    (setstep(2, "index", 5), "field steps\\[2\\].index must be 2"),
    (setstep(0, "extra_outputs", 10**6), "field steps\\[0\\].extra_outputs must be an integer from 0 to 8"),
    (setstep(0, "seconds", float("nan")), "field steps\\[0\\].seconds must be a finite number"),
    (lambda m: m.__setitem__("stopped", "no"), "field stopped must be true or false"),
    (lambda m: m.__setitem__("error", 12), "field error must be text"),
    (lambda m: m.__setitem__("branched_at", -3), "field branched_at must be an integer from 0"),
    (lambda m: m.__setitem__("approx", {"weight": [[1, 2, 3]], "bias": [0, 0, 0]}),
     "field approx.weight must be 4 rows"),
    (lambda m: m["approx"]["bias"].__setitem__(0, float("nan")), "field approx.bias\\[0\\] must be a finite number"),
    (lambda m: m.__setitem__("frames", [1]), "field frames must be an object"),
])
def test_each_bad_field_is_refused_by_name(tmp_path, saved, edit, field):
    path = write(tmp_path, saved, edit)
    with pytest.raises(TrajectoryFileError, match=field) as caught:
        nbd.Trajectory.load(path)
    assert str(path.name) in str(caught.value)


@pytest.mark.parametrize("tensors_edit, field", [
    (lambda t: t.__setitem__("steps.1.latents", torch.zeros(7)), "tensor steps.1.latents must be a floating-point "
                                                                  "tensor of shape \\(4, 8, 8\\)"),
    (lambda t: t.__setitem__("steps.0.pred_x0", torch.zeros(4, 8, 8, dtype=torch.int64)), "tensor steps.0.pred_x0"),
    (lambda t: t.__setitem__("steps.9.latents", torch.zeros(4, 8, 8)), "tensor 'steps.9.latents' must be a tensor"),
    (lambda t: t.__setitem__("steps.0.extra.0", torch.zeros(4, 8, 8)), "tensor 'steps.0.extra.0' must be a tensor"),
    (lambda t: t.__setitem__("payload", torch.zeros(3)), "tensor 'payload' must be a tensor a trajectory writes"),
    (lambda t: t.__setitem__("initial_latents", torch.zeros(2, 4, 8, 8)), "tensor initial_latents must be shape"),
    (lambda t: t.__setitem__("initial_latents", torch.zeros(1, 4, 8, 8, dtype=torch.uint8)),
     "tensor initial_latents must be a floating-point tensor"),
])
def test_bad_tensors_are_refused_by_name(tmp_path, saved, tensors_edit, field):
    with pytest.raises(TrajectoryFileError, match=field):
        nbd.Trajectory.load(write(tmp_path, saved, tensors_edit=tensors_edit))


@pytest.mark.parametrize("meta_text, what", [
    ('{"params": ' * 5000 + "1" + "}" * 5000, "meta is not JSON"),  # nested past Python's recursion limit
    ('{"params": {"seed": ' + "9" * 5000 + "}}", "meta is not JSON"),  # an integer of 5000 digits
    ("[]", "field meta must be an object"),
])
def test_meta_that_is_not_a_trajectory(tmp_path, saved, meta_text, what):
    header = dict(saved[0], meta=meta_text)
    path = tmp_path / "m.nbd"
    save_file(dict(saved[1]), str(path), metadata=header)
    with pytest.raises(TrajectoryFileError, match=what):
        nbd.Trajectory.load(path)


def test_nan_in_json_is_refused(tmp_path, saved):
    header = dict(saved[0])
    header["meta"] = header["meta"].replace('"guidance": 3.0', '"guidance": NaN', 1)
    path = tmp_path / "nan.nbd"
    save_file(dict(saved[1]), str(path), metadata=header)
    with pytest.raises(TrajectoryFileError, match="must be a finite number"):
        nbd.Trajectory.load(path)


def test_a_good_file_still_loads_and_branches(tmp_path, saved, sd_pipe):
    traj = nbd.Trajectory.load(write(tmp_path, saved, name="good.nbd"), pipe=sd_pipe)
    assert len(traj) == 3 and traj.params["prompt"] == PROMPT
    assert len(nbd.branch(sd_pipe, traj, at=0)) == 3
