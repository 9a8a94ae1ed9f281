"""The teaching widgets on a tiny real pipeline: the numbers they show, their runs, their errors."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from nbdiffuse.core import schedule_math as sm
from nbdiffuse.core.locks import pipe_lock
from nbdiffuse.widgets.frames import LOSSLESS_TYPE, mime_type
from nbdiffuse.widgets.teaching import (ForwardExplorer, GuidanceSweep, LatentView, SamplerCompare, ScheduleView,
                                        SeedsAndPrompts, StepsCompare)



def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


# --- ForwardExplorer ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def forward(pipe):
    return ForwardExplorer(pipe=pipe, positions=11)


def test_forward_frames_and_slider(forward):
    assert forward.timesteps == [round(i * 999 / 10) for i in range(11)]
    assert len(forward.frames_pixel) == len(forward.frames_latent) == 11
    assert all(f[:2] == b"\xff\xd8" for f in forward.frames_pixel + forward.frames_latent)
    assert mime_type(forward.original) == LOSSLESS_TYPE and picture(forward.original).size == (16, 16)
    forward.t = 480
    assert forward.index == 5 and forward.t == 500
    forward.index = 0


def test_forward_noising_is_ddpm_add_noise_in_both_spaces(forward, pipe):
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config)
    for t in (0, 300, 999):
        latent = ddpm.add_noise(forward.x0_latent, forward.eps_latent, torch.tensor([t]))
        torch.testing.assert_close(forward.noisy_tensor(t, "latent"), latent, rtol=1e-5, atol=1e-5)
        pixel = ddpm.add_noise(forward.x0_pixel, forward.eps_pixel, torch.tensor([t]))
        torch.testing.assert_close(forward.noisy_tensor(t, "pixel"), pixel, rtol=1e-5, atol=1e-5)


def test_forward_uses_one_eps_for_every_t(forward):
    recovered = []
    for t in (100, 700):
        signal, noise = sm.coefficients(forward.pipe, t)
        recovered.append((forward.noisy_tensor(t, "pixel") - signal * forward.x0_pixel) / noise)
    torch.testing.assert_close(recovered[0], recovered[1], rtol=1e-4, atol=1e-4)


def test_forward_plotted_schedule_is_the_schedulers(forward, pipe):
    abar = pipe.scheduler.alphas_cumprod.double()
    assert forward.schedule["abar"] == pytest.approx(abar.tolist(), rel=1e-6)
    assert forward.schedule["sigma"] == pytest.approx(((1 - abar) / abar).sqrt().tolist(), rel=1e-6)
    c = forward.coefficients(500)
    assert c["snr_db"] == pytest.approx(10 * np.log10(float(abar[500]) / (1 - float(abar[500]))))


def test_forward_accepts_pictures_in_many_forms(pipe, tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (40, 30), (0, 128, 255)).save(path)
    for image in (path, str(path), path.read_bytes(), np.zeros((20, 20, 3), np.uint8), Image.new("L", (8, 8)),
                  "small blue star at the top, sky background"):
        fe = ForwardExplorer(image, pipe=pipe, positions=2)
        assert tuple(fe.image_size) == (16, 16)


def test_forward_bad_input(pipe):
    with pytest.raises(TypeError, match="image must be None, a PIL image"):
        ForwardExplorer(42, pipe=pipe)
    with pytest.raises(ValueError, match="image='zebra pony' is neither a picture file nor a shapes caption"):
        ForwardExplorer("zebra pony", pipe=pipe)
    with pytest.raises(ValueError, match="is not an existing picture file"):
        ForwardExplorer("missing.png", pipe=pipe)
    with pytest.raises(ValueError, match="positions must be an int between 2 and 201, got 1"):
        ForwardExplorer(pipe=pipe, positions=1)
    fe = ForwardExplorer(pipe=pipe, positions=2)
    with pytest.raises(ValueError, match="space must be one of 'pixel', 'latent'; got 'noise'"):
        fe.noisy(10, "noise")
    with pytest.raises(ValueError, match="t must be an int between 0 and 999, got -1"):
        fe.t = -1


# --- ScheduleView ---------------------------------------------------------------------------
def test_schedule_view_plots_the_schedulers_numbers(pipe):
    sv = ScheduleView(pipe, steps=8)
    assert sv.names == ["euler", "euler_karras"]
    for name in sv.names:
        assert sv.points(name) == sm.sampler_points(pipe, name, 8).to_dict()
    assert sv.schedule["abar"] == pytest.approx(pipe.scheduler.alphas_cumprod.double().tolist(), rel=1e-6)
    karras, uniform = sv.points("euler_karras")["sigma"], sv.points("euler")["sigma"]
    assert sum(s < 1 for s in karras) > sum(s < 1 for s in uniform), "Karras spacing spends more steps at low noise"


def test_schedule_view_recomputes_on_steps_and_names(pipe):
    sv = ScheduleView(pipe, scheduler="ddim", steps=5)
    sv.steps = 3
    assert len(sv.series[0]["timesteps"]) == 3
    sv.names = ["dpmpp_2m", "heun"]
    assert [s["name"] for s in sv.series] == ["dpmpp_2m", "heun"] and len(sv.series[1]["timesteps"]) == 3
    sv.names = ["bogus"]  # as the browser could send: an error shown, the last good plot kept
    assert "bogus" in sv.error and [s["name"] for s in sv.series] == ["dpmpp_2m", "heun"]


def test_schedule_view_follows_an_explorer(pipe):
    from nbdiffuse.widgets import Explorer

    ex = Explorer(pipe, steps=6, scheduler="ddim")
    try:
        sv = ScheduleView(pipe).follow(ex)
        assert sv.names[0] == "ddim" and sv.steps == 6 and sv.cursor == -1
        ex.steps = 9
        ex.scheduler = "heun"
        assert sv.steps == 9 and sv.names[0] == "heun"
        ex.generate(background=False)
        assert sv.cursor == 8
        ex.frame = 2
        assert sv.cursor == 2
    finally:
        ex.close()


def test_schedule_view_bad_input(pipe):
    with pytest.raises(ValueError, match="scheduler must be one of .*; got 'nope'"):
        ScheduleView(pipe, scheduler="nope")
    with pytest.raises(ValueError, match="scheduler must be a name or a list of 1..4 names"):
        ScheduleView(pipe, scheduler=[])
    with pytest.raises(ValueError, match="steps must be an int between 1 and 1000, got 0"):
        ScheduleView(pipe, steps=0)


# --- sweeps ---------------------------------------------------------------------------------
def test_guidance_sweep_runs_in_the_background(pipe):
    lock = pipe_lock(pipe)
    with lock:  # the worker cannot start its first run while this thread holds the pipeline
        sweep = GuidanceSweep(pipe, "a red circle", guidances=[1, 3], seeds=[0, 1], steps=3)
        assert sweep.running and sweep.status == "running"
        assert not sweep.wait(0.2)
    assert sweep.wait(120) and sweep.status == "done", sweep.error
    assert [tr.guidances for tr in sweep.trajectories] == [[1.0] * 3, [3.0] * 3, [1.0] * 3, [3.0] * 3]
    assert [tr.params["seed"] for tr in sweep.trajectories] == [0, 0, 1, 1]
    assert [c["label"] for c in sweep.cells] == ["guidance 1", "guidance 3"] * 2
    assert all(len(c["frames"]) == 3 and mime_type(c["final"]) == LOSSLESS_TYPE for c in sweep.cells)
    assert sweep.progress == 1.0
    assert sweep.curve["x"] == [1.0, 3.0]
    assert [s["name"] for s in sweep.curve["series"]] == ["variety", "clipped"]
    assert "adherence needs the shapes model" in sweep.curve["note"] and "adherence needs" in sweep.note
    assert set(sweep.measures) == {1.0, 3.0}
    sweep.selected = 2
    assert sweep.selected_trajectory is sweep.trajectories[2]
    assert threading.current_thread().name not in {t.name for t in threading.enumerate() if "Sweep" in t.name}


def test_guidance_sweep_measures_adherence_on_a_shapes_model(pipe, monkeypatch):
    monkeypatch.setattr(pipe, "_nbd_shapes", True, raising=False)
    sweep = GuidanceSweep(pipe, "big red circle on the left, white background", guidances=[1, 5], seeds=[0, 1],
                          steps=2)
    assert sweep.wait(120) and sweep.status == "done", sweep.error
    names = [s["name"] for s in sweep.curve["series"]]
    assert names == ["adherence", "all right", "off palette", "variety", "clipped"] and not sweep.curve["note"]
    assert all(0.0 <= v <= 1.0 for s in sweep.curve["series"] for v in s["y"])
    from nbdiffuse.shapes import adherence

    finals = sweep.final_images()
    scores = adherence([finals[1], finals[3]], sweep.prompt)
    assert sweep.measures[5.0]["all right"] == scores["joint"]
    assert sweep.measures[5.0]["adherence"] == pytest.approx(np.mean([v for k, v in scores.items() if k != "joint"]))
    from nbdiffuse.shapes import off_palette

    assert sweep.measures[5.0]["off palette"] == pytest.approx(np.mean([off_palette(finals[1]), off_palette(finals[3])]))


def test_sampler_compare_differences(pipe):
    sc = SamplerCompare(pipe, "a red circle", schedulers=["euler", "euler_a", "ddim"], steps=4)
    assert sc.wait(120) and sc.status == "done", sc.error
    assert [tr.params["scheduler"] for tr in sc.trajectories] == ["euler", "euler_a", "ddim"]
    assert len({tr.params["seed"] for tr in sc.trajectories}) == 1
    assert set(sc.differences) == {"euler_a", "ddim"}
    assert sc.differences["euler_a"] > 0  # fresh noise every step: an ancestral sampler ends elsewhere
    assert sc.cells[0]["info"] == "reference" and mime_type(sc.cells[1]["diff"]) == LOSSLESS_TYPE
    assert "Δ vs euler" in sc.cells[2]["info"]


def test_steps_compare_times_and_differences(pipe):
    st = StepsCompare(pipe, "a red circle", steps=[2, 6])
    assert st.wait(120) and st.status == "done", st.error
    assert [len(tr) for tr in st.trajectories] == [2, 6]
    assert set(st.seconds) == {2, 6} and all(s > 0 for s in st.seconds.values())
    assert st.differences[6] == 0.0 and st.differences[2] > 0
    assert "s" in st.cells[0]["info"] and st.curve["x"] == [2, 6]


def test_stop_leaves_the_rest_unrun(pipe):
    sweep = StepsCompare(pipe, "a red circle", steps=[200, 200, 200], run=False)
    assert sweep.status == "idle"
    sweep.run()
    with pytest.raises(RuntimeError, match="still going"):  # running again while it runs is refused
        sweep.run()
    sweep.stop()
    assert sweep.wait(120)
    assert sweep.status == "stopped"
    assert sweep.trajectories[-1] is None
    assert sum(len(tr) for tr in sweep.trajectories if tr is not None) < 600
    thread = sweep._runner.thread
    sweep.close()
    assert thread is None or not thread.is_alive()  # close ends the sweep's worker thread


def test_seeds_and_prompts_rows_keep_and_tweak(pipe):
    sp = SeedsAndPrompts(pipe, "a red circle", seeds=[0, 1], prompts=["a blue circle"], negative_prompt="green",
                         steps=2)
    assert sp.wait(120) and sp.status == "done", sp.error
    rows = [c["row"] for c in sp.cells]
    assert rows == ["one prompt, many seeds"] * 2 + ["seed 0, prompt edits"] + ["negative: “green”"] * 2
    assert [tr.params["negative_prompt"] for tr in sp.trajectories] == ["", "", "", "green", "green"]
    sp.tweak("a red square")
    sp.wait(120)
    sp.keep(5)
    sp.tweak("a red star")
    sp.wait(120)
    sp.tweak("a red moon")
    assert sp.wait(120) and sp.status == "done", sp.error
    assert [c["label"] for c in sp.cells[5:]] == ["a red square", "a red moon"]
    assert sp.cells[5]["kept"] is True
    assert all(tr is not None for tr in sp.trajectories)


def test_sweep_bad_input_names_the_parameter(pipe):
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        GuidanceSweep(pipe, "x", guidances=[-1])
    with pytest.raises(TypeError, match="seeds must be a list, got '0'"):
        GuidanceSweep(pipe, "x", seeds="0")
    with pytest.raises(ValueError, match="guidances must not be empty"):
        GuidanceSweep(pipe, "x", guidances=[])
    with pytest.raises(ValueError, match="schedulers entries must be among .*; got 'nope'"):
        SamplerCompare(pipe, "x", schedulers=["euler", "nope"])
    with pytest.raises(ValueError, match="steps must be an int between 1 and 1000, got 0"):
        StepsCompare(pipe, "x", steps=[5, 0])
    with pytest.raises(TypeError, match="prompt must be a string, got 3"):
        SeedsAndPrompts(pipe, 3)
    with pytest.raises(ValueError, match="i must be a cell index"):
        SeedsAndPrompts(pipe, "x", seeds=[0], steps=1, run=False).keep(7)


# --- LatentView -----------------------------------------------------------------------------
def test_latent_view(pipe):
    from nbdiffuse.core.decode import approx_decoder_for
    from nbdiffuse.widgets.teaching.common import to_tensor, vae_encode

    lv = LatentView(pipe=pipe)
    assert lv.latent_shape == [4, 8, 8] and len(lv.channels) == 4
    torch.testing.assert_close(lv.latents, vae_encode(pipe, to_tensor(lv.image)))
    for tile, (lo, hi), channel in zip(lv.channels, lv.channel_ranges, lv.latents[0]):
        assert picture(tile).size == (8, 8) and picture(tile).mode == "L"
        assert lo == pytest.approx(float(channel.min())) and hi == pytest.approx(float(channel.max()))
    assert picture(lv.approx).size == (8, 8)
    assert np.array_equal(np.asarray(picture(lv.approx)), approx_decoder_for(pipe.vae).rgb(lv.latents[0]))
    assert picture(lv.full).size == (16, 16)
    assert 0 < lv.round_trip_psnr < 99


def test_forward_index_outside_the_frames(forward):
    with pytest.raises(ValueError, match="index must be an int between 0 and 10, got 11"):
        forward.index = 11


# --- a pipeline outside the known families ---------------------------------------------------
def test_lessons_on_a_pipeline_that_runs_its_own_loop(generic_pipe):
    """Sweeps show such a run's x0 (read from its sampler, Sana Sprint's SCM too) and compare on it; the forward
    process and the latent view need only the pipeline's VAE and scheduler."""
    from nbdiffuse.core.decode import full_decode
    from nbdiffuse.testing import tiny_sana_sprint_pipeline

    # (not ddim: deterministic DDIM is Euler's method in another parametrization, the same result)
    sweep = SamplerCompare(generic_pipe, "a lighthouse", schedulers=["euler", "dpmpp_2m"], steps=3)
    assert sweep.wait(120) and sweep.status == "done", sweep.error
    first = sweep.trajectories[0]
    assert first.has_x0 and [c["view"] for c in sweep.cells] == ["x0", "x0"]
    assert len(sweep.cells[0]["frames"]) == 3 and all(mime_type(f) == LOSSLESS_TYPE for f in sweep.cells[0]["frames"])
    final = np.asarray(sweep.final_images()[0], np.float32)
    assert np.abs(final - np.asarray(full_decode(generic_pipe.vae, first.final_latents), np.float32)).max() <= 1
    assert sweep.cells[1]["info"].startswith("Δ vs euler: ") and picture(sweep.cells[1]["diff"]).size == (64, 64)
    assert sweep.differences["dpmpp_2m"] > 0
    steps = StepsCompare(generic_pipe, "a lighthouse", steps=[2, 3])
    assert steps.wait(120) and steps.status == "done", steps.error
    assert set(steps.differences) == {2, 3}
    sprint = SamplerCompare(tiny_sana_sprint_pipeline(), "a lighthouse", schedulers=["SCMScheduler"], steps=2)
    assert sprint.wait(120) and sprint.status == "done", sprint.error  # SCM's "trigflow" x0, at its angles
    assert sprint.trajectories[0].has_x0 and [c["view"] for c in sprint.cells] == ["x0"]
    for widget in (sweep, steps, sprint):
        widget.close()

    forward = ForwardExplorer(pipe=generic_pipe, positions=3)
    assert forward.image.size == (16, 16) and len(forward.frames_latent) == 3
    lv = LatentView(pipe=generic_pipe)
    assert lv.latent_shape == [4, 8, 8] and picture(lv.full).size == (16, 16)
