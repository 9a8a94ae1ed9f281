"""The pipeline matrix: every class of cases.py, built tiny, traced for a few steps and checked against
pipe(...) bit for bit, through every view and decoder, through a .nbd file, and in a headless Explorer
that runs the pipeline's own sampler. One build and one trace per class (module-scoped)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.families import is_generic
from nbdiffuse.core.generic_control import control_parameter
from nbdiffuse.core.schedulers import own_scheduler_name

from cases import CASES

PROMPT, STEPS, SEED, STRENGTH = "a red circle on a blue square", 2, 0, 0.6


def _marked(check: str, kind: str | None = None) -> list:
    """The cases (of `kind`, or all), each marked xfail where its `check` fails today."""
    return [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(strict=True, reason=case.xfail[check])]
                         if check in case.xfail else []) for case in CASES if kind in (None, case.kind)]


def start_picture(case) -> Image.Image:
    h, w = case.size
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def mask_picture(case, lo=0.25, hi=0.75) -> Image.Image:
    """An inpainting case's mask: white (repaint) from lo to hi of each side, black (keep) around it."""
    h, w = case.size
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (int(w * lo), int(h * lo), int(w * hi), int(h * hi)))
    return mask


def picture_args(case) -> dict:
    mask = {"mask_image": mask_picture(case)} if case.mask else {}
    return {"image": start_picture(case), "strength": STRENGTH, **mask} if case.image else {}


def control_picture(case) -> Image.Image:
    h, w = case.size
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8))


def control_args(case) -> dict:
    """trace's control picture of a ControlNet case (none for the others)."""
    if not case.control:
        return {}
    return {"control_image": control_picture(case),
            **({"control_mode": case.control_mode} if case.control_mode is not None else {})}


def reference_run(case, pipe, **extra) -> tuple[torch.Tensor, int]:
    """What pipe(...) itself makes, as (C, h, w) latents, and how many steps it ran (its own callback counts
    them: an image-to-image run at strength 0.6 runs only the last steps of its schedule). The size as given:
    resolution binning off where the pipeline has it, as nbdiffuse runs it unless pipe_kwargs asks (extra)."""
    latents, timesteps = reference_steps(case, pipe, **extra)
    return latents, len(timesteps)


def reference_steps(case, pipe, **extra) -> tuple[torch.Tensor, list[float]]:
    """reference_run's latents, and the timestep of each step as pipe(...)'s callback got it."""
    h, w = case.size
    accepted = inspect.signature(type(pipe).__call__).parameters
    ran = []

    def count(pipe, step, timestep, kwargs):
        ran.append(float(timestep))
        return kwargs

    kwargs = dict(prompt=PROMPT, num_inference_steps=STEPS, generator=torch.Generator("cpu").manual_seed(SEED),
                  output_type="latent", height=h, width=w, guidance_scale=case.guidance, callback_on_step_end=count,
                  use_resolution_binning=False, **picture_args(case))
    kwargs.update(case.pipe_kwargs)
    if case.control:  # the control picture under the pipeline's own name (control_image, or image where that is it)
        kwargs[control_parameter(pipe, accepted)] = control_picture(case)
        if case.control_mode is not None:
            kwargs["control_mode"] = case.control_mode
    kwargs.update(extra)
    torch.manual_seed(SEED)  # as a trace seeds torch's global RNG for pipelines that draw from it (core/generic.py)
    out = pipe(**{key: value for key, value in kwargs.items() if key in accepted})  # img2img: the picture's size
    latents = out.images if hasattr(out, "images") else out[0]
    if latents.ndim == 3 and case.previews:  # packed (Flux-style): the pipeline's own unpacking
        latents = type(pipe)._unpack_latents(latents, h, w, pipe.vae_scale_factor)
    return latents[0], ran


def reference_latents(case, pipe, **extra) -> torch.Tensor:
    return reference_run(case, pipe, **extra)[0]


_built: dict[str, tuple] = {}


def built(case):
    """(pipe, trajectory) of a case, made once per session; trace errors are kept and raised per test."""
    if case.cls not in _built:
        pipe = case.build()
        try:
            h, w = case.size
            traj = nbd.trace(pipe, PROMPT, steps=STEPS, guidance=case.guidance, seed=SEED, height=h, width=w,
                             pipe_kwargs=case.pipe_kwargs or None, **picture_args(case), **control_args(case))
        except Exception as exc:  # noqa: BLE001  (each check reports it)
            traj = exc
        _built[case.cls] = (pipe, traj)
    pipe, traj = _built[case.cls]
    if isinstance(traj, Exception):
        raise traj
    return pipe, traj


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_class_is_what_the_table_says(case):
    pipe = case.build() if case.cls not in _built else _built[case.cls][0]
    assert type(pipe).__name__ == case.cls
    assert ("watched" if is_generic(pipe) else "covered") == case.kind


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_pipeline_itself_runs_on_its_tiny_parts(case):
    """The builder is sound whatever nbdiffuse does with it (checks marked xfail still have a valid pipeline)."""
    pipe = case.build() if case.cls not in _built else _built[case.cls][0]
    latents = reference_latents(case, pipe)
    # without previews: packed tokens (2-D), or another layout (Kandinsky 5's one frame: 1 x h x w x C)
    assert latents.ndim in ((3,) if case.previews else (2, 3, 4)) and torch.isfinite(latents).all()


@pytest.mark.parametrize("case", _marked("parity"))
def test_parity_with_the_pipeline(case):
    pipe, traj = built(case)
    latents, timesteps = reference_steps(case, pipe)
    ran = len(timesteps)
    assert len(traj) == ran == (STEPS if not case.image else len(traj)) and not traj.stopped
    if case.image:  # the last steps of the schedule ran: each is recorded at the timestep it ran at
        assert [step.timestep for step in traj] == pytest.approx(timesteps)
    assert traj.params["start_step"] == traj.params["steps"] - ran
    assert ran == STEPS or case.image  # only image to image runs fewer steps (strength 0.6)
    # what pipe(...) returned, as the trace recorded it (traj.output_latents: the last step's latents, or what the
    # pipeline returned where it changes them after its loop, in the shape it returned them)
    assert torch.equal(traj.output_latents, latents)
    if case.control:  # the picture reaches the model: another one makes another run
        h, w = case.size
        other = Image.fromarray(np.full((h, w, 3), 255, dtype=np.uint8))
        again = nbd.trace(pipe, PROMPT, steps=STEPS, guidance=case.guidance, seed=SEED, height=h, width=w,
                          pipe_kwargs=case.pipe_kwargs or None, **dict(control_args(case), control_image=other),
                          **picture_args(case))
        assert not torch.equal(again.output_latents, traj.output_latents)
    if case.mask:  # the mask reaches the model: another one makes another run
        h, w = case.size
        again = nbd.trace(pipe, PROMPT, steps=STEPS, guidance=case.guidance, seed=SEED, height=h, width=w,
                          pipe_kwargs=case.pipe_kwargs or None, **control_args(case),
                          **dict(picture_args(case), mask_image=mask_picture(case, 0.0, 0.5)))
        assert not torch.equal(again.output_latents, traj.output_latents)
        assert traj.params["mask"]["share"] == pytest.approx(0.25)
    if traj.output is not None or "output_shape" in traj.params:  # and a notice says how it differs
        assert any(f"{case.cls} returns" in notice and "pipe(...) returned" in notice or "the same numbers" in notice
                   for notice in traj.notices)


@pytest.mark.parametrize("case", _marked("parity", "watched"))
def test_x0_is_read_from_what_the_sampler_is_given(case):
    """A watched run's x0 (core/sampler_tap.py) at every step; where the schedule ends at sigma 0 the last step's
    x_t is that step's x0, as the sampler made it from the same output: the formula is the sampler's own."""
    pipe, traj = built(case)
    assert traj.has_x0 is case.x0 and traj.capabilities["branch"] is False
    if not case.x0:
        assert all(step.pred_x0 is None for step in traj)
        assert "gives only the noisy latent x_t at each step (its sampler" in traj.params["capabilities_reason"]
        return
    assert "runs its own loop" in traj.params["capabilities_reason"]
    for step in traj:
        assert step.pred_x0.shape == step.latents.shape and torch.isfinite(step.pred_x0.float()).all()
    last = traj.steps[-1]
    lands = torch.allclose(last.pred_x0.float(), last.latents.float(), rtol=1e-5,
                           atol=1e-5 * max(1.0, float(last.latents.float().abs().max())))
    assert lands is case.x0_lands


@pytest.mark.parametrize("case", _marked("views"))
def test_every_view_and_decoder(case):
    pipe, traj = built(case)
    h, w = case.size
    views = ("x0", "xt") if traj.has_x0 else ("xt",)
    assert traj.capabilities["previews"] is case.previews
    if not case.previews:  # said plainly, for every view and decoder
        for decoder in ("auto", "full", "approx"):
            with pytest.raises(ValueError, match="so it has no previews"):
                traj.image(-1, "xt", decoder=decoder)
        return
    for k in range(len(traj)):
        for view in views:
            for decoder in ("auto", "full", "approx"):
                picture = traj.image(k, view, decoder=decoder)
                assert picture.size == (w, h) and picture.mode == "RGB"
    if not traj.has_x0:
        with pytest.raises(ValueError, match="gives only the noisy latent x_t"):
            traj.image(-1, "x0")
    # the size recorded is the size that ran: what the decoder draws of the latents, at its own size
    assert traj.image(-1, "xt", decoder="full", size="latent").size == (traj.params["width"], traj.params["height"])


@pytest.mark.parametrize("case", _marked("files"))
def test_save_and_load(case, tmp_path):
    pipe, traj = built(case)
    path = tmp_path / "run.nbd"
    traj.save(path)
    loaded = nbd.Trajectory.load(path)
    assert len(loaded) == len(traj) and loaded.has_saved_frames is case.previews
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(loaded.steps, traj.steps))
    assert torch.equal(loaded.output_latents, traj.output_latents)  # what the pipeline returned, kept
    if not case.previews:
        assert loaded.attach(pipe).capabilities["previews"] is False
        return
    h, w = case.size
    assert loaded.image(-1, loaded.default_view).size == (w, h)
    assert loaded.attach(pipe).image(-1, loaded.default_view, decoder="full").size == (w, h)


@pytest.mark.parametrize("case", _marked("explorer"))
def test_a_full_explorer_run_on_the_pipelines_own_sampler(case, open_explorer):
    pipe, traj = built(case)
    h, w = case.size
    ex, fe = open_explorer(pipe, ignore_threads=("tqdm_monitor",), prompt=PROMPT, steps=STEPS, seed=SEED,
                           guidance=case.guidance, height=h, width=w)
    assert fe.state["scheduler"] == own_scheduler_name(pipe) == fe.state["scheduler_options"][0] or \
        fe.state["scheduler"] == own_scheduler_name(pipe) in fe.state["scheduler_options"]
    if case.control:  # the control picture as the widget takes it (a union ControlNet's: with its kind)
        ex.control_from(control_picture(case))
        if case.control_mode is not None:
            fe.set(control_modes=[case.control_mode])
    if case.image or case.control:  # the start picture and strength as the widget takes them; the size asked
        if case.image:  # (without it a picture runs at its own size or the pipeline's usual one)
            ex.start_from(start_picture(case), STRENGTH, mask=mask_picture(case) if case.mask else None)
        ex.generate(height=h, width=w, pipe_kwargs=case.pipe_kwargs or None)
    elif case.pipe_kwargs:  # the pipeline's own keywords go with Generate (the API's; the widget has no control)
        ex.generate(pipe_kwargs=case.pipe_kwargs)
    else:
        fe.click("generate")
    assert ex.wait(120)
    assert fe.state["error"] == "" and fe.state["status"] == "done"
    assert fe.state["n_steps"] == len(traj) == len(ex.trajectory)
    frames = fe.state[f"frames_{traj.default_view}"]
    assert len(frames) == len(traj) and all(frames) is case.previews  # no frames where there is no picture
    assert ("no frames are drawn" in fe.state["capabilities_note"]) is not case.previews  # and it says why
    assert torch.equal(ex.trajectory.final_latents, traj.final_latents)  # the same run as trace's
    if case.control:  # its control as the strip shows it: strengths where nbdiffuse runs the loop, else none seen
        assert fe.state["control_run"]["unseen"] is (case.kind == "watched")
        assert len(fe.state["control_run"]["strengths"]) == (len(traj) if case.kind == "covered" else 0)


def test_resolution_binning_when_pipe_kwargs_asks_for_it():
    """pipe(...)'s own default (binning on) is what trace runs with pipe_kwargs={"use_resolution_binning": True};
    the size that ran is recorded, with a notice, where binning changed the size asked."""
    case = next(case for case in CASES if case.cls == "SanaPipeline")
    pipe, plain = built(case)
    h, w = case.size
    traj = nbd.trace(pipe, PROMPT, steps=STEPS, guidance=case.guidance, seed=SEED, height=h, width=w,
                     pipe_kwargs={"use_resolution_binning": True})
    latents, ran = reference_run(case, pipe, use_resolution_binning=True)
    assert len(traj) == ran == STEPS and torch.equal(traj.final_latents, latents)
    assert traj.final_latents.shape != plain.final_latents.shape  # binning changed the size: not the plain run
    assert (traj.params["height"], traj.params["width"]) != (h, w)
    assert any("resolution binning" in notice for notice in traj.params["notices"])


def test_a_stopped_image_to_image_run_keeps_where_its_steps_sit():
    # a pipeline nbdiffuse watches through its callback: where the run starts is learnt from its first step
    case = next(case for case in CASES if case.cls == "Kandinsky3Img2ImgPipeline")
    pipe = built(case)[0]
    h, w = case.size
    run = dict(steps=8, guidance=case.guidance, seed=SEED, height=h, width=w, image=start_picture(case), strength=0.5)
    whole = nbd.trace(pipe, PROMPT, **run)
    control = nbd.RunControl()

    def stop_after_two(traj, step):
        if len(traj) == 2:
            control.stop()

    stopped = nbd.trace(pipe, PROMPT, control=control, on_step=stop_after_two, **run)
    assert len(whole) == 4 and whole.params["start_step"] == 4 and not whole.stopped
    assert stopped.stopped and len(stopped) == 2 and stopped.params["start_step"] == 4
    assert [s.timestep for s in stopped] == [s.timestep for s in whole][:2]
    assert len(stopped.params["guidance_plan"]) == 4  # the steps the run was to make, not the schedule's 8
    before = nbd.RunControl()
    before.stop()  # stopped before its first step: no step says where the run sits; diffusers' rule does
    none = nbd.trace(pipe, PROMPT, control=before, **run)
    assert none.stopped and len(none) == 0 and none.params["start_step"] == 4
    assert len(none.params["guidance_plan"]) == 4 and none.total_steps == 4
