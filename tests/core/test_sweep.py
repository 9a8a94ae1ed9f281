"""nbd.sweep: grids of runs equal the single trace calls bit for bit, in this process and on executors;
walks end on their ends' runs; a failed cell says why and the rest go on; sweeps save and load."""
import concurrent.futures as cf
import json

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.sweep_plan import trace_keywords
from nbdiffuse.core.walks import lerp_conditioning, slerp

STEPS = 2


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, sd_pipe):
    folder = tmp_path_factory.mktemp("tiny-sd")
    sd_pipe.save_pretrained(folder)
    return folder


def same_run(a, b):
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a.steps, b.steps):
        assert torch.equal(x.latents, y.latents)
        assert torch.equal(x.pred_x0, y.pred_x0)
        assert torch.equal(x.eps_cond, y.eps_cond)
    assert torch.equal(a.initial_latents, b.initial_latents)
    return True


def test_grid_order_and_runs_equal_trace(sd_pipe):
    sweep = nbd.sweep(sd_pipe, "a cat", axes={"seed": [3, 4], "guidance": [1.0, 5.0, 9.0]}, steps=STEPS,
                      progress=False)
    assert sweep.shape == (2, 3) and sweep.done == sweep.total == 6 and not sweep.errors
    for cell, (seed, w) in zip(sweep.cells, [(s, w) for s in (3, 4) for w in (1.0, 5.0, 9.0)]):
        assert cell.call["seed"] == seed and cell.call["guidance"] == w  # row-major: the last axis fastest
        assert same_run(cell.run, nbd.trace(sd_pipe, "a cat", steps=STEPS, seed=seed, guidance=w))
    assert sweep[1, 2] is sweep.cells[5] and sweep[1, 2].labels == {"seed": "4", "guidance": "9"}


def test_seed_walk_ends_are_the_seeds_runs(sd_pipe):
    sweep = nbd.sweep(sd_pipe, "a cat", axes={"seed_walk": (5, 11, 3)}, steps=STEPS, scheduler="euler_a",
                      progress=False)
    first, middle, last = sweep.runs
    assert same_run(first, nbd.trace(sd_pipe, "a cat", steps=STEPS, seed=5, scheduler="euler_a"))
    assert same_run(last, nbd.trace(sd_pipe, "a cat", steps=STEPS, seed=11, scheduler="euler_a"))
    assert middle.params["walk"] == {"seed": {"from": 5, "to": 11, "t": 0.5}} and middle.params["seed"] == 5
    noise = [r.initial_latents for r in sweep.runs]
    assert torch.allclose(middle.initial_latents, slerp(noise[0], noise[2], 0.5))
    assert not torch.equal(noise[1], noise[0]) and not torch.equal(noise[1], noise[2])
    # slerp keeps the noise's size (a straight line would shrink it toward the middle)
    assert abs(noise[1].norm() / noise[0].norm() - 1) < 0.1


def test_prompt_walk_ends_and_middle(sd_pipe):
    sweep = nbd.sweep(sd_pipe, axes={"prompt_walk": ("a cat", "a dog", 3)}, steps=STEPS, seed=2, progress=False)
    first, middle, last = sweep.runs
    assert same_run(first, nbd.trace(sd_pipe, "a cat", steps=STEPS, seed=2))
    assert same_run(last, nbd.trace(sd_pipe, "a dog", steps=STEPS, seed=2))
    assert middle.params["walk"]["prompt"] == {"from": "a cat", "to": "a dog", "t": 0.5}
    assert torch.equal(middle.initial_latents, first.initial_latents)  # same seed, other conditioning
    assert not torch.equal(middle.steps[0].eps_cond, first.steps[0].eps_cond)
    assert not torch.equal(middle.steps[0].eps_cond, last.steps[0].eps_cond)


def test_lerp_conditioning_is_exact_at_its_ends(sd_pipe):
    from nbdiffuse.core.families import adapter_for

    family = adapter_for(sd_pipe)
    a, b = family.encode("a cat", ""), family.encode("a dog", "")
    for t, end in ((0.0, a), (1.0, b)):
        mixed = lerp_conditioning(a, b, t)
        assert all(torch.equal(mixed.cond[k], end.cond[k]) for k in a.cond)


def test_prompt_search_replace(sd_pipe):
    sweep = nbd.sweep(sd_pipe, "a red cat", axes={"prompt_sr": ["red", "blue", "green"]}, steps=1, progress=False)
    assert [c.run.params["prompt"] for c in sweep.cells] == ["a red cat", "a blue cat", "a green cat"]
    with pytest.raises(ValueError, match="search term.*'pink'"):
        nbd.sweep(sd_pipe, "a red cat", axes={"prompt_sr": ["pink", "blue"]}, steps=1, progress=False)


def test_axes_are_trace_keywords():
    import inspect

    assert set(trace_keywords()) == set(inspect.signature(nbd.trace).parameters) - {"pipe", "control", "on_step"}


@pytest.mark.parametrize("axes, fixed, match", [
    ({}, {}, "axes must be a non-empty dict"),
    ({"colour": [1]}, {}, "unknown axis 'colour'"),
    ({"guidance": []}, {}, r"axes\['guidance'\] must be a non-empty list"),
    ({"guidance": 7}, {}, r"axes\['guidance'\] must be a non-empty list"),
    ({"seed": [1, 2]}, {"seed": 3}, "also given as a fixed keyword"),
    ({"seed": [1], "seed_walk": (1, 2, 3)}, {}, "both set 'seed'"),
    ({"seed_walk": (1, 2)}, {}, r"seed_walk must be a tuple \(a, b, n\)"),
    ({"seed_walk": (1, 2, 1)}, {}, r"seed_walk\[2\] \(points\) must be an int in 2"),
    ({"seed_walk": (-1, 2, 3)}, {}, r"seed_walk\[0\]"),
    ({"steps": [0]}, {}, "steps"),
    ({"guidance": [1]}, {"colour": 1}, "unknown keyword 'colour'"),
])
def test_bad_input_is_refused_before_model_work(sd_pipe, model_calls, axes, fixed, match):
    calls = model_calls(sd_pipe.unet)
    with pytest.raises((ValueError, TypeError), match=match):
        nbd.sweep(sd_pipe, "a cat", axes=axes, steps=1, progress=False, **fixed)
    assert calls.count == 0


def test_bad_cell_in_this_process_names_the_cell(sd_pipe, model_calls):
    calls = model_calls(sd_pipe.unet)
    with pytest.raises(ValueError, match=r"sweep cell \(1,\) \(scheduler bogus\).*scheduler must be"):
        nbd.sweep(sd_pipe, "a cat", axes={"scheduler": ["euler", "bogus"]}, steps=1, progress=False)
    assert calls.count == 0


def test_executor_argument_checks(sd_pipe):
    with pytest.raises(TypeError, match="executor must be None.*concurrent.futures.Executor"):
        nbd.sweep(None, "a cat", axes={"seed": [1]}, executor="dask", progress=False)
    with pytest.raises(TypeError, match="pipelines are never sent to workers"):
        with cf.ThreadPoolExecutor(1) as pool:
            nbd.sweep(sd_pipe, "a cat", axes={"seed": [1]}, executor=pool, progress=False)


def test_executor_runs_equal_trace_and_a_failed_cell_says_why(tiny_folder, sd_pipe):
    seen = []
    with cf.ThreadPoolExecutor(2) as pool:
        sweep = nbd.sweep(str(tiny_folder), "a cat", axes={"scheduler": ["euler", "bogus", "ddim"]}, steps=STEPS,
                          executor=pool, progress=lambda done, total, cell: seen.append((done, total)))
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]
    assert list(sweep.errors) == [(1,)] and "scheduler must be None or one of" in sweep.errors[(1,)]
    assert sweep.runs[1] is None
    for cell in (sweep[0], sweep[2]):
        assert same_run(cell.run, nbd.trace(sd_pipe, "a cat", steps=STEPS, scheduler=cell.call["scheduler"]))
        assert cell.run.has_saved_frames  # the worker sent the model's own pictures with the run


def test_save_and_load(sd_pipe, tmp_path):
    sweep = nbd.sweep(sd_pipe, "a cat", axes={"seed_walk": (0, 1, 2), "guidance": [1.0, 4.0]}, steps=1, progress=False)
    index = sweep.save(tmp_path / "grid")
    back = nbd.Sweep.load(tmp_path / "grid")
    assert back.shape == (2, 2) and back.names == ["seed_walk", "guidance"]
    assert [c.labels for c in back.cells] == [c.labels for c in sweep.cells]
    assert all(same_run(a, b) for a, b in zip(back.runs, sweep.runs))
    picture = back.grid_image(cell_size=32)
    assert picture.size[0] > 2 * 32 and picture.size[1] > 2 * 32
    data = json.loads(index.read_text())
    data["cells"][0]["file"] = "../elsewhere.nbd"
    index.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a plain .nbd name"):
        nbd.Sweep.load(tmp_path / "grid")


def test_dask_local_cluster_runs_equal_trace(tiny_folder, sd_pipe):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        sweep = nbd.sweep(str(tiny_folder), "a cat", axes={"seed_walk": (1, 2, 3), "guidance": [1.0, 6.0]},
                          steps=STEPS, executor=client.get_executor(), progress=False)
    assert not sweep.errors and sweep.done == 6
    assert len({c.worker for c in sweep.cells}) == 2  # both workers ran cells
    assert sum(c.load_seconds is not None for c in sweep.cells) == 2  # each loaded the model once
    for cell in sweep.cells:
        walk = cell.call["walk"]["seeds"]
        if walk[2] in (0.0, 1.0):
            reference = nbd.trace(sd_pipe, "a cat", steps=STEPS, seed=cell.call["seed"], guidance=cell.call["guidance"])
        else:
            reference = nbd.sweep(sd_pipe, "a cat", axes={"seed_walk": (1, 2, 3)}, steps=STEPS,
                                  guidance=cell.call["guidance"], progress=False)[1].run
        assert same_run(cell.run, reference)


def test_prompt_walk_on_sdxl_blends_pooled_embeddings_too(sdxl_pipe):
    sweep = nbd.sweep(sdxl_pipe, axes={"prompt_walk": ("a cat", "a dog", 3)}, steps=1, progress=False)
    assert same_run(sweep.runs[0], nbd.trace(sdxl_pipe, "a cat", steps=1))
    assert same_run(sweep.runs[2], nbd.trace(sdxl_pipe, "a dog", steps=1))
    assert not torch.equal(sweep.runs[1].steps[0].eps_cond, sweep.runs[0].steps[0].eps_cond)


def test_lora_scale_axis_equals_set_lora_scale_then_trace(tiny_folder, tmp_path):
    pytest.importorskip("peft")
    from nbdiffuse.testing import save_tiny_lora

    lora = save_tiny_lora(tmp_path / "lora")
    sweep = nbd.sweep(str(tiny_folder), "a cat", axes={"lora_scale": [0.0, 1.0]}, lora=str(lora), steps=STEPS,
                      progress=False)
    pipe = nbd.load_pipeline(str(tiny_folder), lora=str(lora))
    for cell, scale in zip(sweep.cells, (0.0, 1.0)):
        nbd.set_lora_scale(pipe, scale)
        assert same_run(cell.run, nbd.trace(pipe, "a cat", steps=STEPS))
        assert cell.run.params["lora"]["scale"] == scale
    assert not torch.equal(sweep.runs[0].steps[-1].latents, sweep.runs[1].steps[-1].latents)


@pytest.mark.parametrize("axis", ["prompt_walk", "seed_walk"])
def test_a_branch_of_a_walks_run_that_changes_nothing_replays_it(sd_pipe, axis):
    walk = ("a cat", "a dog", 3) if axis == "prompt_walk" else (4, 9, 3)
    fixed = {"prompt": "a cat"} if axis == "seed_walk" else {}
    middle = nbd.sweep(sd_pipe, axes={axis: walk}, steps=3, scheduler="euler_a", progress=False, **fixed)[1].run
    child = nbd.branch(sd_pipe, middle, at=0)
    assert child.params["walk"] == middle.params["walk"]
    assert same_run(child, middle)
    other = nbd.branch(sd_pipe, middle, at=0, prompt="a bird")
    assert "prompt" not in (other.params.get("walk") or {})


def test_a_controlnet_sweep_loads_the_controlnet_in_each_worker(tiny_folder, tmp_path):
    """controlnet= is how workers load the model (load_pipeline's); the control picture is fixed and its scale
    an axis: each cell equals trace on the joined pipeline, here and on an executor."""
    from PIL import Image

    from nbdiffuse.testing import tiny_controlnet, tiny_sd_pipeline

    tiny_controlnet(tiny_sd_pipeline(), seed=3).save_pretrained(tmp_path / "net")
    picture = Image.effect_noise((16, 16), 64).convert("RGB")
    run = dict(steps=STEPS, control_image=picture, controlnet=str(tmp_path / "net"), progress=False)
    with cf.ThreadPoolExecutor(2) as pool:
        spread = nbd.sweep(str(tiny_folder), "a cat", axes={"control_scale": [0.0, 1.5]}, executor=pool, **run)
    here = nbd.sweep(str(tiny_folder), "a cat", axes={"control_scale": [0.0, 1.5]}, **run)
    pipe = nbd.load_pipeline(str(tiny_folder), controlnet=str(tmp_path / "net"))
    for cells in (spread.cells, here.cells):
        for cell, scale in zip(cells, (0.0, 1.5)):
            assert not cell.error, cell.error
            assert same_run(cell.run, nbd.trace(pipe, "a cat", steps=STEPS, control_image=picture,
                                                control_scale=scale))
            assert cell.run.params["control"]["model"] == str(tmp_path / "net")
    assert not torch.equal(here.runs[0].final_latents, here.runs[1].final_latents)
    assert here.fixed["controlnet"] == str(tmp_path / "net")
