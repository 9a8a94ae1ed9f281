"""Explorer widget logic without a browser: a HeadlessFrontend plays the browser's part."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from polling import hold, started

from nbdiffuse.widgets.frames import LOSSLESS_TYPE, decode_frame, mime_type
from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.headless import HeadlessFrontend


def test_defaults_suit_the_model_and_are_checked(pipe):
    ex = Explorer(pipe)
    try:
        assert ex.scheduler in ex.scheduler_options and ex.scheduler == "euler"
        assert (ex.height, ex.width) == (16, 16) and 16 in ex.size_options  # the tiny model's own size
        assert ex.steps == 30 and ex.guidance == 7.5 and ex.status == "idle"
        assert ex.trajectory is None and ex.history == []
    finally:
        ex.close()
    with pytest.raises(TypeError, match="unknown default.*colour"):
        Explorer(pipe, colour="red")
    with pytest.raises(ValueError, match="steps"):
        Explorer(pipe, steps=0)
    with pytest.raises(ValueError, match="scheduler"):
        Explorer(pipe, scheduler="warp")
    with pytest.raises(ValueError, match="view"):
        Explorer(pipe, view="side")


def test_generate_and_wait_fill_the_state_the_browser_keeps(explorer):
    ex, fe = explorer
    ex.generate(prompt="a blue square", steps=8, seed=3)
    assert ex.wait(120)
    traj = ex.trajectory
    assert len(traj) == 8 and not traj.stopped and traj.params["seed"] == 3
    assert ex.status == fe.state["status"] == "done"
    assert fe.state["n_steps"] == 8 and len(fe.state["frames_x0"]) == len(fe.state["frames_xt"]) == 8
    # The kept frames are lossless pictures of what frames_decoder names: the full VAE's where it is
    # cheap next to a step, else the approx decoder's (this test model has no tiny decoder)
    decoder = fe.state["frames_decoder"]
    assert decoder in ("full", "approx")
    assert all(mime_type(f) == LOSSLESS_TYPE for f in fe.state["frames_x0"] + fe.state["frames_xt"])
    for k in (0, 7):
        for view in ("x0", "xt"):
            made = (traj.approx_decoder().rgb(traj.latents_for(k, view)) if decoder == "approx"
                    else np.asarray(traj.image(k, view, decoder="full")))
            assert (decode_frame(fe.state[f"frames_{view}"][k]) == made).all()
    full = fe.state["full_frames"]
    assert sorted(full) == ["7:x0", "7:xt"] and mime_type(full["7:x0"]) == LOSSLESS_TYPE
    assert Image.open(io.BytesIO(full["7:x0"])).size == (16, 16)
    assert fe.state["guidances"] == traj.guidances and fe.state["prompt"] == "a blue square"
    # live frames went out paced: never more than two awaiting an ack
    assert fe.frames and fe.max_unacked <= 2
    assert all(f["run"] == fe.state["run_id"] for f in fe.frames)


def test_done_shows_the_picture_first_and_the_frames_the_live_view_skipped_follow(pipe, open_explorer, monkeypatch):
    import functools

    from nbdiffuse.widgets import live_run
    from nbdiffuse.widgets.frames import step_frames

    # a live interval far longer than the run: only the first step is made while it goes
    monkeypatch.setattr(live_run, "Pacer", functools.partial(live_run.Pacer, min_interval=60))
    ex, fe = open_explorer(pipe, steps=8)
    at_done = []
    ex.observe(lambda change: at_done.append((list(ex.frames_x0), list(ex.guidance_maps), dict(ex.full_frames)))
               if change["new"] == "done" else None, names="status")
    ex.generate(prompt="a blue square", steps=8, seed=3)
    assert ex.wait(120)
    frames_x0, guidance_maps, full = at_done[0]
    assert sorted(full) == ["7:x0", "7:xt"]  # the run's picture goes out with "done"
    assert len(frames_x0) == 8 and frames_x0[0] and not any(frames_x0[1:])  # skipped steps: none yet
    assert guidance_maps == []  # overlays follow with the skipped frames
    traj = ex.trajectory
    decoder = fe.state["frames_decoder"]
    for k in range(8):
        x0, xt = step_frames(traj, k, decoder=decoder)
        assert fe.state["frames_x0"][k] == x0 and fe.state["frames_xt"][k] == xt
    assert len(fe.state["guidance_maps"]) == 8
    assert ex._kept.frames_of(traj, ex.preview)[0] == fe.state["frames_x0"]  # what a reload of the run shows


def test_bad_input_raises_at_once_and_starts_nothing(explorer):
    ex, fe = explorer
    for bad, match in [(dict(steps=0), "steps"), (dict(guidance=-1), "guidance"), (dict(seed="x"), "seed"),
                       (dict(scheduler="nope"), "scheduler"), (dict(height=15), "height")]:
        with pytest.raises((ValueError, TypeError), match=match):
            ex.generate(**bad)
    assert ex.history == [] and ex.status == "idle" and not ex.running


def test_guidance_change_mid_run_lands_in_the_trajectory(explorer, wait_for):
    ex, fe = explorer
    ex.generate(steps=200, guidance=7.5)
    wait_for(started(ex, 3), what="three steps")
    fe.set(guidance=2.5)  # the user drags the slider in the browser
    wait_for(lambda: 2.5 in ex.trajectory.guidances, what="the new guidance in use")
    ex.stop()
    assert ex.wait(120)
    used = ex.trajectory.guidances
    change = used.index(2.5)
    assert change >= 3 and set(used[:change]) == {7.5} and set(used[change:]) == {2.5}
    assert fe.state["guidances"] == used


def test_stop_pause_step_resume(explorer, wait_for):
    ex, fe = explorer
    ex.generate(steps=300)
    hold(fe, ex, 2)
    n = len(ex.trajectory)
    assert fe.state["n_steps"] == n and len(fe.state["frames_x0"]) == n
    assert sorted(fe.state["full_frames"]) == [f"{n - 1}:x0", f"{n - 1}:xt"]  # the held frame in full
    assert ex.trajectory.params and len(ex.trajectory) == n  # still held
    fe.click("step")
    wait_for(lambda: fe.state["status"] == "paused" and fe.state["n_steps"] == n + 1, what="one more step")
    assert len(ex.trajectory) == n + 1
    fe.click("resume")
    wait_for(lambda: len(ex.trajectory) > n + 3, what="running again")
    fe.click("stop")
    assert ex.wait(120)
    assert ex.status == "stopped" and ex.trajectory.stopped and len(ex.trajectory) < 300
    ex.generate(steps=4)  # the next run works
    assert ex.wait(120) and ex.status == "done" and len(ex.trajectory) == 4


def test_generate_during_a_run_replaces_it_and_runs_never_overlap(explorer, pipe, wait_for, overlap_watch):
    ex, fe = explorer
    with overlap_watch(pipe.unet) as watch:
        ex.generate(prompt="first", steps=300)
        wait_for(started(ex, 2), what="the first run")
        fe.click("generate")  # the browser's Generate uses the controls: the same prompt, 300 steps
        ex.generate(prompt="third", steps=5)
        assert ex.wait(120)
    assert not watch.overlaps
    first, last = ex.history[0], ex.history[-1]
    assert first.params["prompt"] == "first" and first.stopped and len(first) < 300
    assert last.params["prompt"] == "third" and len(last) == 5 and not last.stopped
    assert len(ex.history) in (2, 3)  # the click's run may have been replaced before it began
    assert ex.status == "done" and fe.state["run_id"] == ex.run_id


def test_a_failing_run_shows_plain_words_and_the_next_run_works(explorer, pipe):
    ex, fe = explorer

    def out_of_memory(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = pipe.unet.register_forward_pre_hook(out_of_memory)
    try:
        ex.generate(steps=5)
        assert ex.wait(120)
    finally:
        hook.remove()
    assert fe.state["status"] == "error"
    assert fe.state["error"].startswith("Out of memory at step 1 of 5") and "smaller size" in fe.state["error"]
    assert "OutOfMemoryError" in fe.state["error_details"]
    ex.generate(steps=5)
    assert ex.wait(120)
    assert fe.state["status"] == "done" and fe.state["error"] == "" and len(ex.trajectory) == 5


def test_a_failing_vae_keeps_the_approx_frames_and_says_so(explorer, pipe, monkeypatch):
    ex, fe = explorer

    def broken(*args, **kwargs):
        raise RuntimeError("VAE exploded")

    monkeypatch.setattr(pipe.vae, "decode", broken)
    ex.generate(steps=3)
    assert ex.wait(120)
    assert fe.state["status"] == "error" and "VAE exploded" in fe.state["error"]
    assert len(fe.state["frames_x0"]) == 3 and fe.state["full_frames"] == {}
    assert len(ex.trajectory) == 3 and not ex.trajectory.stopped  # the run itself completed


def test_bad_values_from_the_browser_show_in_the_widget(explorer):
    ex, fe = explorer
    fe.set(steps=0)
    fe.click("generate")  # must not raise into the kernel's message loop
    assert fe.state["error"].startswith("Cannot start: steps must be")
    assert ex.status == "idle" and ex.history == []
    fe.set(steps=3)
    fe.click("generate")
    assert ex.wait(120) and fe.state["status"] == "done" and fe.state["error"] == ""


def test_scrub_sends_the_full_vae_frame(explorer, wait_for):
    ex, fe = explorer
    ex.generate(steps=4)
    assert ex.wait(120)
    fe.send({"type": "scrub", "run": ex.run_id, "k": 1})
    reply = wait_for(lambda: [c for c in fe.customs if c[0].get("type") == "full"], what="a full frame")
    content, buffers = reply[-1]
    assert content["k"] == 1 and content["views"] == ["x0", "xt"]
    assert [mime_type(b) for b in buffers] == [LOSSLESS_TYPE, LOSSLESS_TYPE]


def test_foreground_run_updates_the_view_from_the_calling_thread(explorer):
    ex, fe = explorer
    ex.generate(steps=6, background=False)
    assert ex.status == "done" and len(ex.trajectory) == 6 and not ex.running
    assert fe.frames and fe.state["n_steps"] == 6 and len(fe.state["frames_xt"]) == 6


def test_close_during_a_paused_run_leaves_no_thread(pipe, wait_for):
    before = set(threading.enumerate())
    ex = Explorer(pipe)
    fe = HeadlessFrontend(ex, ack=False)  # a browser that never acks: pacing falls back to timeouts
    ex.generate(steps=500)
    wait_for(started(ex, 2), what="two steps")
    ex.pause()
    wait_for(lambda: ex.status == "paused", what="paused")
    ex.close()
    fe.close()
    assert ex.trajectory.stopped
    left = [th for th in threading.enumerate() if th not in before and th.is_alive()]
    assert not left
    with pytest.raises(RuntimeError, match="closed"):
        ex.generate()


def test_front_end_files_follow_the_theme_and_label_controls():
    js = Explorer._esm  # the front end as served: widgets/explorer/*.js after the shared parts
    css = Explorer._css
    assert "export default" in js and "stopPropagation" in js
    for var in ("--jp-layout-color1", "--vscode-editor-background", "--jp-ui-font-color1"):
        assert var in css  # the shared theme (theme.css) comes first in the Explorer's stylesheet
    assert "image-rendering: pixelated" in css
    for label in ("Prompt", "Negative prompt", "Seed", "Random seed", "Steps", "Scheduler", "Guidance", "Generate",
                  "Stop", "Pause", "Step"):
        assert f'"aria-label": "{label}' in js, label


def test_default_guidance_follows_the_model_family(flux_pipe, pixart_pipe):
    # Flux-dev takes guidance as a model input (3.5 in diffusers' FluxPipeline); PixArt's default is 4.5.
    for pipe, expected in ((flux_pipe, 3.5), (pixart_pipe, 4.5)):
        ex = Explorer(pipe)
        try:
            assert ex.guidance == expected
        finally:
            ex.close()


def test_a_finished_runs_thumbnail_has_its_full_vae_colours(explorer):
    """The run tree's thumbnail comes from the final frame the full VAE decoded, not the approx decoder
    (whose colours are off: the shapes model's white background turns light blue, i.e. "sky")."""
    import numpy as np

    ex, fe = explorer
    ex.generate(steps=4, seed=3)
    assert ex.wait(120)
    traj = ex.trajectory
    full = traj.image(-1, "x0", decoder="full")  # 16 x 16: small enough to be its own thumbnail
    assert full.size != traj.image(-1, "x0", decoder="approx", size="latent").size
    thumb = fe.state["run_thumbs"][-1]  # lossless at this size: the full VAE's pixels, exactly
    assert mime_type(thumb) == LOSSLESS_TYPE and (decode_frame(thumb) == np.asarray(full.convert("RGB"))).all()


def test_the_run_clock_counts_wall_time_and_leaves_pauses_out():
    from nbdiffuse.widgets.run_clock import RunClock

    now = [10.0]
    clock = RunClock(lambda: now[0])
    assert (clock.seconds(), clock.rate()) == (0.0, 0.0)
    clock.start()
    for t in (11.0, 12.0):  # two steps, a second each, from the start
        now[0] = t
        clock.step()
    assert (clock.seconds(), clock.rate()) == (2.0, 1.0)
    clock.hold()
    now[0] = 100.0
    assert (clock.seconds(), clock.rate()) == (2.0, 1.0)  # frozen while held
    clock.release()
    now[0] = 101.0
    clock.step()
    assert (clock.seconds(), clock.rate()) == (3.0, 1.0)  # the 88 s held count for nothing


def test_it_per_second_agrees_with_the_seconds_shown(explorer, wait_for):
    """'step 60 / 60, 39.4 it/s, done in 4.3 s' was a rate of the model's time in the last 10 steps:
    now steps / seconds of the wall time the user watched, pauses left out."""
    ex, fe = explorer
    ex.generate(steps=300)
    hold(fe, ex, 2)
    held = fe.state["its"], fe.state["seconds"]
    # its and seconds are rounded (2 and 3 decimals): their product is within a few tenths of a step
    assert held[0] > 0 and held[0] * held[1] == pytest.approx(fe.state["n_steps"], abs=0.3)
    fe.click("stop")
    assert ex.wait(120)
    n, its, seconds = fe.state["n_steps"], fe.state["its"], fe.state["seconds"]
    assert its * seconds == pytest.approx(n, abs=0.3)
    model_time = sum(s.seconds for s in ex.trajectory)
    assert seconds + 0.001 >= model_time  # wall time holds the model's time and more
    ex.generate(steps=8)
    assert ex.wait(120)
    ex.branch(at=4, guidance=2.0)  # 3 steps run; the branch shows all 8
    assert ex.wait(120) and fe.state["n_steps"] == 8
    assert fe.state["its"] * fe.state["seconds"] == pytest.approx(3, abs=0.3)
