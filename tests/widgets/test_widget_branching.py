"""What-if guidance, branches, the run tree, compare and workshop mode through the Explorer (no browser)."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.headless import HeadlessFrontend


@pytest.fixture
def unet_calls(pipe):
    calls = [0]
    handle = pipe.unet.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    yield calls
    handle.remove()


def whatifs(fe):
    return [(c, b) for c, b in fe.customs if c.get("type") == "whatif"]


def test_what_if_needs_no_model_call_and_changes_the_picture(explorer, unet_calls, wait_for):
    ex, fe = explorer
    ex.generate(guidance=5.0, seed=1)
    assert ex.wait(120)
    before = unet_calls[0]
    same = ex.what_if(5.0, k=3)
    other = ex.what_if(12.0, k=3)
    assert same.tobytes() != other.tobytes()
    fe.send({"type": "whatif", "run": ex.run_id, "k": 3, "g": 12.0, "decoder": "approx"})
    fe.send({"type": "whatif", "run": ex.run_id, "k": 3, "g": 12.0, "decoder": "full"})
    wait_for(lambda: len(whatifs(fe)) >= 1 and whatifs(fe)[-1][0]["decoder"] == "full", what="what-if frames")
    content, buffers = whatifs(fe)[-1]
    assert content["k"] == 3 and content["g"] == 12.0 and Image.open(io.BytesIO(buffers[0])).size == (16, 16)
    assert unet_calls[0] == before, "what-if must not call the UNet"
    with pytest.raises(ValueError, match="guidance"):
        ex.what_if(-1)
    with pytest.raises(ValueError, match="decoder"):
        ex.what_if(3.0, decoder="vae")
    fe.send({"type": "whatif", "run": ex.run_id, "k": 3, "g": "x"})  # a bad request from the page
    assert "what-if guidance" in ex.error and ex.status == "done"


def test_continue_and_branch_here_grow_a_tree_costing_only_the_rest(explorer, unet_calls, wait_for):
    ex, fe = explorer
    ex.generate(guidance=5.0, steps=8)
    assert ex.wait(120)
    first = ex.trajectory
    before = unet_calls[0]
    fe.set(frame=3)
    fe.send({"type": "continue", "k": 3, "g": 9.0})  # "Continue from here" with the what-if guidance
    assert ex.wait(120) and len(ex.history) == 2
    child = ex.trajectory
    assert unet_calls[0] - before == 8 - 4  # one batched (cond + uncond) UNet call per remaining step
    assert child.params["parent"] == first.id and child.params["branched_at"] == 3
    assert child.guidances[:4] == first.guidances[:4] and set(child.guidances[4:]) == {9.0}
    nodes = fe.state["runs"]
    assert [n["depth"] for n in nodes] == [0, 1] and "guidance 5 → 9" in nodes[1]["changed"]
    assert len(fe.state["run_thumbs"]) == 2 and all(fe.state["run_thumbs"])
    assert fe.state["shown_run"] == child.id
    # "Branch here" from the first run with what the controls now say.
    fe.send({"type": "load_run", "id": first.id})
    assert fe.state["shown_run"] == first.id and fe.state["n_steps"] == 8
    fe.set(seed=7, prompt="a green triangle")
    fe.send({"type": "branch", "k": 5})
    assert ex.wait(120) and len(ex.history) == 3
    grand = ex.trajectory
    assert grand.params["parent"] == first.id and grand.params["prompt"] == "a green triangle"
    assert any("seed 0 → 7" in n["changed"] and "prompt" in n["changed"] for n in ex.runs)
    assert ex.error == ""


def test_unet_calls_per_branch(explorer, unet_calls):
    """A branch at k runs steps k+1..N-1 only (the tiny pipeline batches cond/uncond: one call a step)."""
    ex, fe = explorer
    ex.generate(guidance=5.0, steps=8)
    assert ex.wait(120)
    full = unet_calls[0]
    for k in (1, 4, 6):
        before = unet_calls[0]
        ex.load_run(0)
        ex.branch(at=k, guidance=3.0)
        assert ex.wait(120)
        assert (unet_calls[0] - before) / full == pytest.approx((8 - k - 1) / 8)


def test_branch_rejects_bad_input_at_once(explorer):
    ex, fe = explorer
    with pytest.raises(ValueError, match="no run"):
        ex.branch(guidance=3.0)
    ex.generate(steps=6)
    assert ex.wait(120)
    for bad, match in [(dict(at=6), "at must be a step index in 0..5"), (dict(at=5), "last step"),
                       (dict(at=2, scheduler="warp"), "scheduler"), (dict(at=2, guidance=-2), "guidance"),
                       (dict(at=2, seed=-1), "seed"), (dict(at=2, colour="red"), "unknown change")]:
        with pytest.raises((ValueError, TypeError), match=match):
            ex.branch(**bad)
    assert len(ex.history) == 1
    fe.send({"type": "branch", "k": 5})  # the last step, from the page: shown, kernel fine
    assert "last step" in ex.error and len(ex.history) == 1


def test_compare_two_runs_side_by_side(explorer):
    ex, fe = explorer
    ex.generate(guidance=2.0, steps=6, seed=0)
    assert ex.wait(120)
    ex.generate(guidance=8.0, steps=6, seed=0)
    assert ex.wait(120)
    fe.send({"type": "compare", "a": ex.history[0].id, "b": ex.history[1].id})
    info = fe.state["comparison"]
    assert info["a"] == ex.history[0].id and len(info["pairs"]) == 6 and len(info["difference"]) == 6
    assert 0 <= info["locks_in_at"] < 6 and max(info["difference"]) > 0
    assert len(fe.state["compare_a"]) == len(fe.state["compare_b"]) == len(fe.state["compare_heat"]) == 6
    assert Image.open(io.BytesIO(fe.state["compare_heat"][-1])).size == (128, 128)
    comparison = ex.compare(0, 1)
    assert comparison.difference == pytest.approx(info["difference"], abs=1e-4)
    fe.send({"type": "compare_close"})
    assert fe.state["comparison"] == {} and fe.state["compare_heat"] == []
    with pytest.raises(ValueError, match="run index"):
        ex.compare(0, 5)
    fe.send({"type": "compare", "a": "nope", "b": ex.history[0].id})
    assert "'nope' is not the id" in ex.error


def test_workshop_mode_from_files_without_the_model(pipe, tmp_path, unet_calls):
    import nbdiffuse as nbd

    a = nbd.trace(pipe, "a red circle", steps=6, guidance=5.0, seed=0)
    b = nbd.branch(pipe, a, at=2, guidance=9.0)
    a.save(tmp_path / "a.nbd")
    b.save(tmp_path / "b.nbd")
    before = unet_calls[0]
    ex = Explorer.from_files([tmp_path / "a.nbd", tmp_path / "b.nbd"])
    fe = HeadlessFrontend(ex)
    try:
        assert ex.pipe is None and fe.state["has_pipe"] is False and "Workshop mode" in fe.state["workshop_note"]
        assert fe.state["n_steps"] == 6 and fe.state["status"] == "done" and len(fe.state["frames_x0"]) == 6
        assert [n["depth"] for n in fe.state["runs"]] == [0, 1]  # the tree comes back from the files
        picture = ex.what_if(1.5, k=2)
        assert picture.size == (16, 16)
        ex.compare(0, 1)
        assert len(fe.state["comparison"]["pairs"]) == 6
        ex.export_dir = str(tmp_path / "out")
        assert ex.export("gif").exists() and ex.export("html").exists()
        with pytest.raises(ValueError, match="needs a pipeline"):
            ex.generate()
        with pytest.raises(ValueError, match="needs a pipeline"):
            ex.branch(at=1, guidance=2.0)
        fe.click("generate")
        assert "needs a pipeline" in ex.error
        assert unet_calls[0] == before
    finally:
        ex.close()
        fe.close()
    # With the pipeline: full-VAE frames on demand, and branching works.
    ex = Explorer.from_files(tmp_path / "a.nbd", pipe=pipe)
    try:
        assert fe.state is not None and ex.has_pipe and sorted(ex.full_frames) == ["5:x0", "5:xt"]
        ex.branch(at=1, guidance=2.0)
        assert ex.wait(120) and len(ex.history) == 2
    finally:
        ex.close()
    with pytest.raises(ValueError, match="paths"):
        Explorer.from_files([])


def test_runs_are_labelled_by_what_sets_them_apart(explorer):
    ex, fe = explorer
    for params in (dict(prompt="big green star at the top", seed=0, guidance=5.0, steps=4),
                   dict(prompt="big green star at the top", seed=3, guidance=5.0, steps=4),
                   dict(prompt="big purple star at the top", seed=3, guidance=8.0, steps=6, scheduler="ddim"),
                   dict(prompt="big purple star at the top", seed=3, guidance=8.0, steps=6, scheduler="ddim")):
        ex.generate(**params)
        assert ex.wait(120)
    labels = [n["changed"] for n in fe.state["runs"]]
    assert labels[0] == "new run: big green star at the top · seed 0, guidance 5, 4 steps, euler"
    assert labels[1] == "new run, vs #1: seed 0 → 3"
    assert labels[2] == ("new run, vs #2: prompt green → purple, guidance 5 → 8, steps 4 → 6, "
                         "sampler euler → ddim")
    assert labels[3] == "new run, vs #3: same settings (the same picture)"
    assert len(set(labels)) == 4
    assert fe.state["runs"][2]["settings"].startswith("prompt: big purple star at the top\nseed 3 · guidance 8")
    ex.load_run(1)
    ex.branch(at=1, guidance=2.0, prompt="big green star at the top small")
    assert ex.wait(120)
    assert fe.state["runs"][2]["changed"] == "at step 2: prompt +small, guidance 5 → 2"  # under its parent, #2
    ex.generate(prompt="big green star at the top", seed=3, guidance=lambda k: 5.0 if k < 3 else 2.0, steps=4)
    assert ex.wait(120)  # vs the branch #5, whose guidance went 5 -> 2 at step 3; this run's at step 4
    assert fe.state["runs"][-1]["changed"] == ("new run, vs #5: prompt −small, "
                                               "guidance (5, 2 from step 3) → (5, 2 from step 4)")


def test_compare_captions_say_what_differs_and_follow_the_pickers(explorer):
    ex, fe = explorer
    ex.generate(prompt="big green star at the top", seed=0, guidance=5.0, steps=4)
    assert ex.wait(120)
    ex.generate(prompt="big purple star at the top", seed=3, guidance=5.0, steps=4)
    assert ex.wait(120)
    a, b = ex.history
    fe.send({"type": "compare", "a": a.id, "b": b.id})
    info = fe.state["comparison"]
    assert (info["caption_a"], info["caption_b"]) == ("prompt “green” · seed 0", "prompt “purple” · seed 3")
    assert info["settings_a"].startswith("prompt: big green star at the top")
    ex.generate(prompt="big purple star at the top", seed=3, guidance=5.0, steps=4)  # the same again
    assert ex.wait(120)
    fe.send({"type": "compare", "a": b.id, "b": ex.history[2].id})
    assert fe.state["comparison"]["caption_a"] == fe.state["comparison"]["caption_b"] == "same settings"


def test_continue_from_here_says_it_moved_the_guidance_slider(explorer, wait_for):
    ex, fe = explorer
    ex.generate(guidance=5.0, steps=8)
    assert ex.wait(120) and fe.state["guidance_note"] == ""
    fe.send({"type": "continue", "k": 3, "g": 9.0})  # the what-if slider at 9
    assert ex.wait(120)
    assert fe.state["guidance"] == 9.0 and ex.trajectory.guidances[4:] == [9.0] * 4  # the slider shows what runs
    assert fe.state["guidance_note"].startswith("Guidance 5 → 9: the branch from step 4 runs with it")
    fe.set(guidance=6.0)  # the user moves the slider: the note has done its job
    assert fe.state["guidance_note"] == ""
    ex.load_run(0)  # the controls show the loaded run's settings (guidance 5)
    fe.set(guidance=6.0)
    fe.send({"type": "branch", "k": 2})  # Branch here takes the slider's value: nothing moves by itself
    assert ex.wait(120) and fe.state["guidance_note"] == "" and fe.state["guidance"] == 6.0


def test_workshop_mode_refuses_a_start_picture(pipe, tmp_path):
    import nbdiffuse as nbd
    from PIL import Image

    nbd.trace(pipe, "a red circle", steps=3).save(tmp_path / "a.nbd")
    ex = Explorer.from_files([tmp_path / "a.nbd"])
    fe = HeadlessFrontend(ex)
    try:
        with pytest.raises(ValueError, match="needs a pipeline"):
            ex.start_from(Image.new("RGB", (16, 16)))
        png = tmp_path / "p.png"
        Image.new("RGB", (16, 16), "red").save(png)
        fe.send({"type": "upload"}, [png.read_bytes()])  # the page's upload, were its button on
        assert "needs a pipeline" in ex.error and fe.state["start_thumb"] == b"" and not ex.use_picture
        ex.start_from(None)  # going back to noise needs no model
    finally:
        ex.close()
        fe.close()
