"""The Explorer's overlays: a run's attention maps and guidance maps as per-step bytes in the widget state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.overlay_maps import overlay_state


def test_attention_on_makes_generate_record_maps_the_state_carries(explorer):
    ex, _ = explorer
    assert ex.attention is False
    ex.generate(prompt="a red circle", steps=4, seed=1, guidance=4.0)
    assert ex.wait(120)
    assert ex.overlay_words == [] and ex.overlay_maps == []  # traced without maps
    assert len(ex.guidance_maps) == 4 and ex.guidance_scale > 0  # the guidance map needs no recording
    ex.attention = True
    ex.generate(prompt="a red circle", steps=4, seed=1, guidance=4.0)
    assert ex.wait(120)
    traj = ex.trajectory
    assert ex.overlay_words == traj.tokens == ["a", "red", "circle"]
    h, w = ex.overlay_grid
    assert (h, w) == tuple(traj[0].latents.shape[-2:]) and len(ex.overlay_maps) == 4
    maps = np.stack([np.frombuffer(b, np.uint8).reshape(3, h, w) for b in ex.overlay_maps])
    red = torch.stack([traj.attention(k, "red") for k in range(4)])
    assert maps[:, 1].max() == 255 and abs(ex.overlay_scale[1] - float(red.max())) < 1e-4
    assert np.abs(maps[:, 1] / 255 * ex.overlay_scale[1] - red.numpy()).max() <= ex.overlay_scale[1] / 255
    shown = ex.history[0]  # a kept run shown again brings its own overlays (no maps: none)
    ex.load_run(shown)
    assert ex.overlay_words == []
    ex.load_run(traj)
    assert ex.overlay_words == traj.tokens and ex.overlay_maps == overlay_state(traj)["overlay_maps"]


def test_attention_maps_are_offered_only_where_nbdiffuse_runs_the_loop(explorer, generic_pipe, sd_pipe):
    """A pipeline that runs its own loop has no layers nbdiffuse reads: the box is off and disabled (the page
    says why), after a swap too, and ticked from Python the error says why."""
    ex, _ = explorer
    assert ex.attention_available
    ex.attention = True
    ex.set_pipeline(generic_pipe)
    assert not ex.attention_available and ex.attention is False
    ex.attention = True
    with pytest.raises(ValueError, match="attention=True needs a known model family .* runs its own loop"):
        ex.generate(steps=2, background=False)
    ex.set_pipeline(sd_pipe)
    assert ex.attention_available


def test_no_guidance_overlay_where_guidance_is_a_model_input(flux_pipe):
    traj = nbd.trace(flux_pipe, "a red circle", steps=2, guidance=3.5, seed=0, height=32, width=32, attention=True)
    state = overlay_state(traj)
    assert state["guidance_maps"] == [] and "no guidance overlay" in state["overlay_note"]
    assert state["overlay_words"] == traj.tokens and len(state["overlay_maps"]) == 2


def test_workshop_mode_shows_the_maps_a_saved_run_carries(pipe, tmp_path):
    from nbdiffuse.widgets import Explorer

    traj = nbd.trace(pipe, "a red circle", steps=3, guidance=4.0, seed=2, attention=True)
    path = tmp_path / "run.nbd"
    traj.save(path)
    ex = Explorer.from_files([path])
    try:
        assert ex.overlay_words == traj.tokens and ex.overlay_maps == overlay_state(traj)["overlay_maps"]
        assert ex.guidance_maps == overlay_state(traj)["guidance_maps"] and len(ex.guidance_maps) == 3
    finally:
        ex.close()


def test_the_page_asks_for_the_shown_runs_decision_curve(explorer, wait_for):
    ex, _ = explorer
    ex.generate(prompt="a red circle", steps=4, seed=1, guidance=4.0)
    assert ex.wait(120)
    ex._requests.on_msg(ex, {"type": "decision_curve"}, [])
    wait_for(lambda: ex.decision_status == "done", 120, "the decision curve")
    curve = ex.decision
    assert curve["run"] == ex.shown.id and curve["total"] == 4 and curve["steps"] == [0, 1, 2]
    assert set(curve["keep"]) == {"picture"} and len(curve["keep"]["picture"]) == 3  # not the shapes model
    assert all(0 <= v <= 1 for v in curve["keep"]["picture"]) and "picture" in curve["decided"]
    assert ex.error == ""


def test_scrubbed_frames_do_not_wait_behind_a_decision_curve(explorer, wait_for, monkeypatch):
    import threading

    from nbdiffuse.widgets.explorer import browser

    ex, fe = explorer
    ex.generate(prompt="a red circle", steps=4, seed=1, guidance=4.0)
    assert ex.wait(120)
    release, started = threading.Event(), threading.Event()

    def slow_curve(explorer):  # a curve that takes as long as the test says
        started.set()
        release.wait(60)

    monkeypatch.setattr(browser, "show_decision_curve", slow_curve)
    fe.send({"type": "decision_curve"})
    assert started.wait(30)
    fe.send({"type": "scrub", "run": ex.run_id, "k": 1})
    try:
        wait_for(lambda: any(c.get("type") == "full" and c.get("k") == 1 for c, _ in fe.customs), 30,
                 "the scrubbed frame while the curve is being made")
    finally:
        release.set()


def test_live_frames_carry_their_steps_word_maps_and_a_new_run_drops_the_last_ones(explorer, monkeypatch):
    import base64
    import functools

    from nbdiffuse.widgets import live_run

    monkeypatch.setattr(live_run, "Pacer", functools.partial(live_run.Pacer, min_interval=0))  # a frame a step
    ex, fe = explorer
    ex.attention = True
    ex.generate(prompt="a red circle", steps=8, seed=1, guidance=4.0, background=False)
    assert ex.overlay_words == ["a", "red", "circle"]
    traj = ex.trajectory
    live = [m for m in fe.frames if "om" in m]
    assert live and all(m["ow"] == traj.tokens and m["og"] == ex.overlay_grid for m in live)
    h, w = ex.overlay_grid
    for m in live:
        k = m["k"]
        maps = np.frombuffer(base64.b64decode(m["om"]), np.uint8).reshape(3, h, w)
        red = torch.stack([traj.attention(j, "red") for j in range(k + 1)])
        top = float(red.max())  # the largest value so far, not the whole run's
        # the step that holds the largest value so far reaches 255; a weaker step after it stays below
        assert abs(m["os"][1] - top) < 1e-4 and abs(int(maps[1].max()) - round(float(red[k].max()) / top * 255)) <= 1
        assert np.abs(maps[1] / 255 * top - red[k].float().numpy()).max() <= top / 255 + 1e-6
    ex.attention = False
    seen = []
    ex.observe(lambda change: seen.append(list(change["new"])), "overlay_words")
    ex.generate(prompt="a blue square", steps=4, seed=2, guidance=4.0, background=False)
    assert seen[0] == [] and ex.overlay_words == []  # cleared when the run starts: no map lies over its frames
    assert not [m for m in fe.frames if "om" in m and m["run"] == ex.run_id]


def test_live_frames_carry_their_steps_guidance_map_and_none_where_a_step_ran_without(explorer, monkeypatch):
    import base64
    import functools

    from nbdiffuse.widgets import live_run

    monkeypatch.setattr(live_run, "Pacer", functools.partial(live_run.Pacer, min_interval=0))  # a frame a step
    ex, fe = explorer
    guidance = [4.0, 4.0, 6.0, 1.0, 1.0, 5.0]  # steps 4 and 5 run without guidance: no map there
    ex.generate(prompt="a red circle", steps=6, seed=1, guidance=guidance, background=False)
    traj = ex.trajectory
    assert ex.guidance_maps == [] and "ran without guidance" in ex.overlay_note  # the whole run has none
    live = [m for m in fe.frames if "gm" in m and m["run"] == ex.run_id]
    assert [m["k"] for m in live] == [m["k"] for m in fe.frames if m["run"] == ex.run_id]  # every frame says
    h, w = tuple(traj[0].latents.shape[-2:])
    for m in live:
        k = m["k"]
        if guidance[k] <= 1:
            assert m["gm"] == "" and m["og"] == [h, w]
            continue
        apart = torch.stack([traj.guidance_map(j) for j in range(k + 1) if guidance[j] > 1])
        top = float(apart.max())  # the largest value so far, not the whole run's
        step_map = np.frombuffer(base64.b64decode(m["gm"]), np.uint8).reshape(h, w)
        assert m["og"] == [h, w] and abs(m["gs"] - top) < 1e-4
        assert np.abs(step_map / 255 * top - traj.guidance_map(k).numpy()).max() <= top / 255 + 1e-6
    assert any(m["gm"] == "" for m in live) and any(m["gm"] for m in live)
    ex.generate(prompt="a red circle", steps=3, seed=1, guidance=4.0, background=False)
    last = [m for m in fe.frames if m["run"] == ex.run_id][-1]  # a whole guided run: its last frame's map is
    final = np.frombuffer(ex.guidance_maps[last["k"]], np.uint8).reshape(h, w)  # the state's, at the same scale
    assert abs(last["gs"] - ex.guidance_scale) < 1e-4
    assert np.array_equal(np.frombuffer(base64.b64decode(last["gm"]), np.uint8).reshape(h, w), final)


def test_live_maps_of_a_big_latent_grid_travel_averaged_to_at_most_64_a_side():
    from nbdiffuse.core.overlay_maps import LIVE_SIDE, live_grid

    maps = torch.rand(3, 128, 96, generator=torch.Generator().manual_seed(0))  # SDXL-sized: 1024 x 768
    small = live_grid(maps)
    assert small.shape == (3, 64, 48) and LIVE_SIDE == 64
    assert torch.allclose(small, maps.reshape(3, 64, 2, 48, 2).mean(dim=(2, 4)))  # 2 x 2 blocks' means
    odd = torch.rand(100, 72)
    assert live_grid(odd).shape == (50, 36)
    assert torch.equal(live_grid(maps[:, :64, :48]), maps[:, :64, :48])  # small grids travel as they are
