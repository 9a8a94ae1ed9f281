"""The Explorer's overlays: a run's attention maps and guidance maps as per-step bytes in the widget state."""
from __future__ import annotations

import numpy as np
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


def test_live_frames_carry_their_steps_word_maps_and_a_new_run_drops_the_last_ones(explorer):
    import base64

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
        assert abs(m["os"][1] - top) < 1e-4 and maps[1].max() == 255
        assert np.abs(maps[1] / 255 * top - red[k].float().numpy()).max() <= top / 255 + 1e-6
    ex.attention = False
    seen = []
    ex.observe(lambda change: seen.append(list(change["new"])), "overlay_words")
    ex.generate(prompt="a blue square", steps=4, seed=2, guidance=4.0, background=False)
    assert seen[0] == [] and ex.overlay_words == []  # cleared when the run starts: no map lies over its frames
    assert not [m for m in fe.frames if "om" in m and m["run"] == ex.run_id]
