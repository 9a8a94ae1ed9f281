"""ex.set_pipeline(...): swap the model and keep the history; LoRA scale changes between Explorer runs."""
from __future__ import annotations


import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.testing import save_tiny_lora, tiny_sd_pipeline
from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.headless import HeadlessFrontend


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two tiny SD checkpoints (one family, other weights), as diffusers folders."""
    root = tmp_path_factory.mktemp("models")
    for seed in (0, 1):
        tiny_sd_pipeline(seed=seed).save_pretrained(root / f"sd-{seed}", safe_serialization=True)
    return root / "sd-0", root / "sd-1"


def test_swap_to_another_checkpoint_keeps_history_and_the_next_run_uses_it(folders, open_explorer):
    first, second = folders
    ex, fe = open_explorer(str(first), steps=4)
    ex.generate(prompt="red circle", seed=3)
    assert ex.wait(120)
    old = ex.trajectory
    ex.set_pipeline(str(second))
    assert ex.pipe is not old.pipe or old.pipe is None
    assert ex.history == [old] and fe.state["model_label"] == str(second) and fe.state["runs"][0]["id"] == old.id
    # the old run stays scrubbable from its kept frames, without its model
    assert old.pipe is None and ex.load_run(0) is old and len(fe.state["frames_x0"]) == 4
    ex.generate()
    assert ex.wait(120) and ex.status == "done"
    new = ex.trajectory
    assert new.params["model"] == str(second) and new.params["prompt"] == "red circle" and new.params["seed"] == 3
    expected = nbd.trace(nbd.load_pipeline(second), "red circle", steps=4, seed=3, guidance=ex.guidance)
    assert torch.equal(new.final_latents, expected.final_latents)
    # Branching the old run with the new model: allowed (one family, one latent space), and said.
    ex.load_run(old.id)
    ex.branch(1)
    assert ex.wait(120) and ex.status == "done", ex.error
    child = ex.trajectory
    assert child.params["parent"] == old.id and child.params["model"] == str(second)
    assert torch.equal(child[1].latents, old[1].latents) and not torch.equal(child[3].latents, old[3].latents)
    assert child.notices == [f"steps 1 to 2 came from {first}, the rest from {second}"]
    node = next(n for n in fe.state["runs"] if n["id"] == child.id)
    # the run tree says the model changed, with the ends of the paths, where they differ
    assert node["changed"].startswith(f"at step 2: model …{str(first)[-27:]} → …{str(second)[-27:]}")
    # back to the first model (by name: a new object), its runs' branches carry on without the notice
    ex.set_pipeline(str(first))
    ex.load_run(old.id)
    ex.branch(1)
    assert ex.wait(120) and ex.trajectory.notices == [] and torch.equal(ex.trajectory[3].latents, old[3].latents)


def test_swap_across_families_refreshes_the_controls_and_refuses_branching_old_runs(open_explorer, sdxl_pipe):
    ex, fe = open_explorer(tiny_sd_pipeline(), steps=3)
    sd_defaults = {key: fe.state[key] for key in ("guidance", "prompt", "size_options", "height", "scheduler")}
    ex.negative_prompt = "blurry"  # a control the user changed: kept
    ex.generate()
    assert ex.wait(120)
    old = ex.trajectory
    ex.set_pipeline(sdxl_pipe)
    assert ex.pipe is sdxl_pipe and fe.state["model_label"] == "StableDiffusionXLPipeline"
    assert fe.state["negative_prompt"] == "blurry" and fe.state["prompt"] == sd_defaults["prompt"]
    assert fe.state["guidance"] == 5.0 != sd_defaults["guidance"], "left at SD's default: SDXL's default now"
    assert fe.state["scheduler"] in fe.state["scheduler_options"]
    with pytest.raises(ValueError, match=r"made by StableDiffusionPipeline \(stable-diffusion\).*now holds "
                                         r"StableDiffusionXLPipeline \(stable-diffusion-xl\).*cannot continue"):
        ex.branch(0)
    ex.generate()
    assert ex.wait(120) and ex.status == "done", ex.error
    assert ex.trajectory.params["pipeline"] == "StableDiffusionXLPipeline" and ex.trajectory.params["guidance"][0] == 5.0
    assert ex.trajectory.params["negative_prompt"] == "blurry"
    assert [traj.id for traj in ex.history] == [old.id, ex.trajectory.id]
    assert ex.load_run(old.id) is old and ex.what_if(9.0, k=1).size == (16, 16), "old runs keep their what-if"


def test_a_user_guidance_is_kept_and_a_bad_source_changes_nothing(open_explorer, sd3_pipe):
    pipe = tiny_sd_pipeline()
    ex, fe = open_explorer(pipe, steps=3)
    fe.set(guidance=3.0)
    with pytest.raises(nbd.PipelineLoadError, match="neither an existing folder nor a hub id"):
        ex.set_pipeline("not a model!")
    assert ex.pipe is pipe and fe.state["guidance"] == 3.0
    with pytest.raises(TypeError, match="lora must be"):
        ex.set_pipeline(sd3_pipe, lora=42)
    assert ex.pipe is pipe
    ex.set_pipeline(sd3_pipe)
    assert fe.state["guidance"] == 3.0 and fe.state["scheduler"] in nbd.schedulers(sd3_pipe)
    ex.generate()
    assert ex.wait(120) and ex.status == "done", ex.error
    assert ex.trajectory.params["pipeline"] == "StableDiffusion3Pipeline"


def test_swap_during_a_run_stops_it_and_keeps_it(open_explorer, wait_for):
    ex, fe = open_explorer(tiny_sd_pipeline(), steps=400)
    ex.generate()
    wait_for(lambda: ex.trajectory is not None and len(ex.trajectory) >= 2, 120, "the run to be under way")
    other = tiny_sd_pipeline(seed=1)
    ex.set_pipeline(other)
    assert not ex.running
    stopped = ex.history[0]
    assert stopped.stopped and 2 <= len(stopped) < 400 and stopped.pipe is None
    ex.generate(steps=2)
    assert ex.wait(120) and ex.status == "done" and len(ex.history) == 2
    assert torch.equal(ex.trajectory.final_latents,
                       nbd.trace(other, ex.prompt, steps=2, guidance=ex.guidance, seed=ex.seed).final_latents)


def test_workshop_mode_gets_a_model(open_explorer, tmp_path):
    pipe = tiny_sd_pipeline()
    traj = nbd.trace(pipe, "star", steps=3)
    traj.save(tmp_path / "run.nbd")
    ex = Explorer.from_files([tmp_path / "run.nbd"])
    fe = HeadlessFrontend(ex)
    try:
        assert not fe.state["has_pipe"]
        ex.set_pipeline(pipe)
        assert fe.state["has_pipe"] and fe.state["workshop_note"] == "" and fe.state["prompt"] == "star"
        ex.branch(0)  # a saved run of the same (anonymous) model, by name: no notice
        assert ex.wait(120) and ex.status == "done", ex.error
        assert ex.trajectory.notices == [] and torch.equal(ex.trajectory.final_latents, traj.final_latents)
    finally:
        ex.close()
        fe.close()


def test_lora_scale_changes_reach_the_explorers_next_run(folders, open_explorer, tmp_path):
    pytest.importorskip("peft")
    save_tiny_lora(tmp_path / "lora")
    first, _ = folders
    ex, fe = open_explorer(str(first), steps=3)
    base = ex.pipe
    ex.generate(background=False)
    plain = ex.trajectory
    ex.set_pipeline(str(first), lora=tmp_path / "lora", lora_scale=1.0)
    assert ex.pipe is not base
    ex.generate(background=False)
    with_lora = ex.trajectory
    assert with_lora.params["lora"]["scale"] == 1.0 and not torch.equal(with_lora.final_latents, plain.final_latents)
    nbd.set_lora_scale(ex.pipe, 0.0)
    ex.generate(background=False)
    assert ex.trajectory.params["lora"]["scale"] == 0.0
    assert torch.equal(ex.trajectory.final_latents, plain.final_latents), "scale 0: the base model's run"
    # continuing the LoRA run at scale 0 says so: the LoRA's scale is part of the model
    ex.load_run(with_lora.id)
    ex.branch(0, background=False)
    assert ex.trajectory.notices == [f"steps 1 to 1 came from {first} with LoRA {tmp_path / 'lora'} at 1, "
                                     f"the rest from {first} with LoRA {tmp_path / 'lora'} at 0"]
