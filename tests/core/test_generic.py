"""The generic path: a real pipeline outside the known families (AltDiffusionPipeline),
watched through diffusers' callback_on_step_end: x_t every step, x0 read from what its sampler is given
(core/sampler_tap.py), stop, pause; no what-if/branch. A pipeline whose sampler never sees the whole x_t
(StableDiffusionPanoramaPipeline wider than its window) records x_t alone."""
import threading

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.families import StableDiffusionFamily, family_for
from nbdiffuse.core.families import adapter_for, is_generic, takes_step_callback
from nbdiffuse.core.generic import GenericRun
from nbdiffuse.core.trajfile import oldest_reader

PROMPT = "a red circle"


def own_latents(pipe, steps, seed, guidance, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(prompt=PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                output_type="latent", **kw).images[0]


def test_alt_diffusion_is_outside_the_families_and_takes_the_callback(generic_pipe, sd_pipe):
    from diffusers import StableDiffusionPipeline

    assert not isinstance(generic_pipe, StableDiffusionPipeline)
    with pytest.raises(TypeError):
        family_for(generic_pipe)
    assert takes_step_callback(generic_pipe) and is_generic(generic_pipe)
    assert not is_generic(sd_pipe) and isinstance(adapter_for(sd_pipe), StableDiffusionFamily)
    assert isinstance(nbd.core.prepare(generic_pipe, PROMPT, steps=3), GenericRun)


def test_trace_records_xt_every_step_ending_at_the_pipelines_own_latents(generic_pipe):
    seen = []
    traj = nbd.trace(generic_pipe, PROMPT, steps=5, guidance=3.0, seed=4, on_step=lambda tr, s: seen.append(s.index))
    assert len(traj) == 5 and seen == [0, 1, 2, 3, 4] and not traj.stopped
    assert torch.equal(traj[-1].latents, own_latents(generic_pipe, 5, 4, 3.0))  # bit for bit
    assert traj.initial_latents.shape == (1, 4, 8, 8)
    for step in traj:
        assert step.latents.shape == step.pred_x0.shape == (4, 8, 8)
        assert step.eps_cond is None and step.eps_uncond is None and step.x0_coeff < 0
    assert torch.equal(traj[-1].pred_x0, traj[-1].latents)  # Euler's last step lands on its x0 (sigma 0 next)
    assert not torch.equal(traj[0].pred_x0, traj[0].latents)
    timesteps = [s.timestep for s in traj]
    assert timesteps == sorted(timesteps, reverse=True) and len(set(timesteps)) == 5
    p = traj.params
    assert p["family"] == "generic" and p["pipeline"] == "AltDiffusionPipeline"
    assert p["capabilities"] == {"x0": True, "what_if": False, "branch": False, "live_guidance": False,
                                 "previews": True}
    assert p["capabilities_reason"].startswith("This pipeline (AltDiffusionPipeline) runs its own loop: nbdiffuse "
                                               "reads each step's x_t and x0 from its sampler")
    assert traj.guidances == [3.0] * 5 and p["height"] == p["width"] == 16


def test_the_pipelines_own_prompt_encoding_holds_the_tokenizer_lock(generic_pipe):
    """pipe(...) encodes its prompts itself: that encoding holds the lock the prompt checks take,
    which is free again once the steps run (and after the run)."""
    from nbdiffuse.core.locks import TOKENIZER_LOCK

    held = {"encoding": [], "steps": []}
    original = generic_pipe.encode_prompt

    def watching(*args, **kwargs):
        held["encoding"].append(TOKENIZER_LOCK._is_owned())
        return original(*args, **kwargs)

    generic_pipe.encode_prompt = watching
    try:
        nbd.trace(generic_pipe, PROMPT, steps=3, on_step=lambda tr, s: held["steps"].append(TOKENIZER_LOCK._is_owned()))
    finally:
        del generic_pipe.encode_prompt
    assert held == {"encoding": [True], "steps": [False, False, False]}
    assert TOKENIZER_LOCK.acquire(blocking=False)
    TOKENIZER_LOCK.release()


def test_size_and_negative_prompt_reach_the_pipeline(generic_pipe):
    traj = nbd.trace(generic_pipe, PROMPT, negative_prompt="blue", steps=3, guidance=2.0, seed=1, height=24, width=32)
    assert traj[-1].latents.shape == (4, 12, 16)  # the tiny VAE downsamples 2x
    generator = torch.Generator("cpu").manual_seed(1)
    out = generic_pipe(prompt=PROMPT, negative_prompt="blue", num_inference_steps=3, guidance_scale=2.0,
                   generator=generator, height=24, width=32, output_type="latent").images[0]
    assert torch.equal(traj[-1].latents, out)
    assert traj.image(-1, view="xt").size == (32, 24)


def test_stop_mid_run_keeps_the_steps_done(generic_pipe):
    control = nbd.RunControl()

    def on_step(traj, step):
        if step.index == 2:
            control.stop()

    traj = nbd.trace(generic_pipe, PROMPT, steps=8, seed=0, control=control, on_step=on_step)
    assert traj.stopped and len(traj) == 3 and traj.total_steps == 8
    full = nbd.trace(generic_pipe, PROMPT, steps=8, seed=0)
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(traj, full))
    assert "step" not in vars(generic_pipe.scheduler)  # the pipeline's own scheduler is untouched


def test_pause_and_step_once_hold_inside_the_callback(generic_pipe):
    control = nbd.RunControl()
    control.pause()
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("traj", nbd.trace(generic_pipe, PROMPT, steps=4,
                                                                                 control=control)))
    worker.start()
    try:
        assert control.wait_until_waiting(30)
        control.step_once()
        assert control.wait_until_waiting(30)
    finally:
        control.resume()
        worker.join(60)
    assert not worker.is_alive() and len(result["traj"]) == 4


@pytest.mark.parametrize("guidance", [[2.0, 3.0, 4.0], lambda k: 2.0 + k, (5.0, 5.0, 5.0)])
def test_per_step_guidance_is_refused_with_the_reason(generic_pipe, guidance):
    with pytest.raises(ValueError, match="one number for AltDiffusionPipeline.*callback_on_step_end"):
        nbd.core.prepare(generic_pipe, PROMPT, steps=3, guidance=guidance)


def test_bad_input_is_refused_before_any_model_work(generic_pipe):
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        nbd.core.prepare(generic_pipe, PROMPT, steps=3, guidance=-1.0)
    with pytest.raises(TypeError, match="guidance"):
        nbd.core.prepare(generic_pipe, PROMPT, steps=3, guidance="high")
    with pytest.raises(ValueError, match="image to image needs a family"):
        nbd.core.prepare(generic_pipe, PROMPT, steps=3, image=torch.zeros(16, 16, 3, dtype=torch.uint8).numpy())
    with pytest.raises(ValueError, match="multiple of 2"):
        nbd.core.prepare(generic_pipe, PROMPT, steps=3, height=21)


def test_what_if_and_branch_refuse_clearly_and_x0_where_the_sampler_gives_none(generic_pipe, xt_only_pipe):
    traj = nbd.trace(generic_pipe, PROMPT, steps=3, seed=0)
    assert traj.image(1, view="x0").size == (16, 16)
    with pytest.raises(ValueError, match=r"AltDiffusionPipeline\) runs its own loop.*not the \(cond, uncond\) pair, "
                                         r"so a what-if needs a family"):
        traj.guided_x0(1, guidance=5.0)
    with pytest.raises(ValueError, match=r"branching needs a family nbdiffuse knows"):
        nbd.branch(generic_pipe, traj, at=0)
    assert traj.final_image.size == (16, 16)  # the last x_t, decoded by the VAE
    alone = nbd.trace(xt_only_pipe, PROMPT, steps=2, seed=0, height=16, width=160)
    assert not alone.has_x0 and all(step.pred_x0 is None for step in alone)
    # its sampler saw windows of 8 x 64: x_T is what its prepare_latents drew, the whole 8 x 80
    assert alone.initial_latents.shape == (1, 4, 8, 80) == (1, *alone[0].latents.shape)
    assert "prepare_latents" not in xt_only_pipe.__dict__  # put back
    assert alone.params["capabilities_reason"].startswith(
        "This pipeline (StableDiffusionPanoramaPipeline) gives only the noisy latent x_t at each step (its sampler is "
        "given pieces of its latents, 8 x 64 of 8 x 80: windows): x0, what-if")
    with pytest.raises(ValueError, match=r"only the noisy latent x_t.*view='xt' works"):
        alone.image(1, view="x0")


def test_branching_a_known_familys_run_with_this_pipeline_is_refused(generic_pipe, sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=3, seed=0)
    with pytest.raises(ValueError, match="branching needs a family"):
        nbd.branch(generic_pipe, traj, at=0)


def test_save_load_round_trip(generic_pipe, tmp_path):
    traj = nbd.trace(generic_pipe, PROMPT, steps=4, guidance=2.5, seed=3)
    traj.save(tmp_path / "run.nbd")
    back = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert back.params == traj.params and len(back) == 4 and back.has_x0
    assert torch.equal(back.initial_latents, traj.initial_latents)
    for a, b in zip(traj, back):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.pred_x0, b.pred_x0) and b.eps_cond is None
        assert (a.timestep, a.sigma, a.xt_scale, a.x0_coeff) == (b.timestep, b.sigma, b.xt_scale, b.x0_coeff)
    # the approx decoder travelled with it, and the pictures of both views
    assert back.image(-1, view="xt", decoder="approx", size="latent").tobytes() == \
        traj.image(-1, view="xt", decoder="approx", size="latent").tobytes()
    assert back.has_saved_frames and {view for _, view in back.saved_frames} == {"x0", "xt"}
    with pytest.raises(ValueError, match="a what-if needs a family"):
        back.guided_x0(-1, 5.0)
    attached = nbd.Trajectory.load(tmp_path / "run.nbd", pipe=generic_pipe)
    assert attached.image(-1, view="xt", decoder="full").size == (16, 16)


def test_previews_of_xt_have_the_right_size(generic_pipe):
    traj = nbd.trace(generic_pipe, PROMPT, steps=2, seed=0, height=16, width=32)
    assert traj.image(0, view="xt").size == (32, 16)
    assert traj.image(0, view="xt", decoder="approx", size="latent").size == (16, 8)
    from nbdiffuse.widgets.frames import LOSSLESS_TYPE, decode_frame, full_frames, mime_type, step_frames

    x0, xt = step_frames(traj, 1)
    assert decode_frame(x0).shape == decode_frame(xt).shape == (8, 16, 3)  # approx: the latent size, lossless
    x0, xt = full_frames(traj, 1)
    assert mime_type(x0) == mime_type(xt) == LOSSLESS_TYPE


def test_pipeline_scheduler_is_put_back_and_scheduler_names_work(generic_pipe):
    own = generic_pipe.scheduler
    traj = nbd.trace(generic_pipe, PROMPT, steps=3, seed=0, scheduler="dpmpp_2m")
    assert generic_pipe.scheduler is own and "step" not in vars(own)
    assert traj.params["scheduler_class"] == "DPMSolverMultistepScheduler" and len(traj) == 3


def test_html_export_of_an_x_t_only_run(xt_only_pipe, generic_pipe, tmp_path):
    traj = nbd.trace(xt_only_pipe, "a red circle", steps=2, guidance=5.0, seed=0, height=16, width=160)
    traj.to_html(tmp_path / "run.html")
    page = (tmp_path / "run.html").read_text()
    assert '"xt": [' in page and '"x0": [' not in page and "parentElement.hidden = true" in page
    nbd.trace(generic_pipe, "a red circle", steps=3, guidance=5.0, seed=0).to_html(tmp_path / "both.html")
    assert '"x0": [' in (tmp_path / "both.html").read_text()


def without_x0(traj):
    """`traj` as a watched run that recorded x_t alone would be (its output kept)."""
    import dataclasses

    alone = nbd.Trajectory(params={**traj.params, "capabilities": {**traj.params["capabilities"], "x0": False}},
                           initial_latents=traj.initial_latents,
                           steps=[dataclasses.replace(step, pred_x0=None) for step in traj.steps])
    alone.output = traj.output
    return alone


def changing_output(pipe, change):
    """pipe as a pipeline whose pipe(...) returns change(latents) where its loop ended at latents (as Flux 2 Klein
    returns its VAE's latents and Cosmos 2 drops the frame axis)."""
    import copy
    import dataclasses
    import functools

    base = type(pipe)

    class Changed(base):
        @functools.wraps(base.__call__)
        def __call__(self, *args, **kwargs):
            out = base.__call__(self, *args, **kwargs)
            return dataclasses.replace(out, images=change(out.images))

    other = copy.copy(pipe)
    other.__class__ = Changed
    return other


def test_what_the_pipeline_returns_in_another_shape_is_recorded_and_kept(generic_pipe, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    def version(path):
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata()["format_version"]

    plain = nbd.trace(generic_pipe, PROMPT, steps=2, guidance=3.0, seed=1)
    assert plain.output is None and "output_shape" not in plain.params
    assert torch.equal(plain.output_latents, plain.final_latents)
    plain.save(tmp_path / "plain.nbd", frames=False)
    assert version(tmp_path / "plain.nbd") == "4"  # x0 without the (cond, uncond) pair: readers before 4 refuse it

    # the same numbers in another shape: the steps as the loop had them, and the shape pipe(...) returned
    flat = changing_output(generic_pipe, lambda latents: latents.flatten(2))
    traj = nbd.trace(flat, PROMPT, steps=2, guidance=3.0, seed=1)
    assert traj.output is None and traj.params["output_shape"] == [4, 64]
    assert torch.equal(traj.final_latents, plain.final_latents) and traj.final_latents.shape == (4, 8, 8)
    assert torch.equal(traj.output_latents, plain.final_latents.flatten(1))
    assert any("returns its last step's latents in another shape ((4, 64), where its steps are (4, 8, 8)): the "
               "same numbers" in notice for notice in traj.notices)
    traj.save(tmp_path / "flat.nbd", frames=False)
    back = nbd.Trajectory.load(tmp_path / "flat.nbd")
    assert version(tmp_path / "flat.nbd") == "4" and torch.equal(back.output_latents, traj.output_latents)
    assert oldest_reader(without_x0(traj)) == 3  # its output shape alone: version 3 readers open it

    # other numbers of another shape: traj.output holds them, the steps stay as the loop had them
    other = changing_output(generic_pipe, lambda latents: latents.flatten(2) * 2)
    traj = nbd.trace(other, PROMPT, steps=2, guidance=3.0, seed=1)
    assert torch.equal(traj.final_latents, plain.final_latents) and "output_shape" not in traj.params
    assert torch.equal(traj.output, plain.final_latents.flatten(1) * 2) and traj.output_latents is traj.output
    assert any("traj.output holds what pipe(...) returned" in notice for notice in traj.notices)
    traj.save(tmp_path / "other.nbd")
    back = nbd.Trajectory.load(tmp_path / "other.nbd")
    assert version(tmp_path / "other.nbd") == "4" and torch.equal(back.output, traj.output)
    assert oldest_reader(without_x0(traj)) == 3 and oldest_reader(without_x0(plain)) == 2
    assert back.notices == traj.notices and back.has_saved_frames  # its steps' pictures as before

    # a file's output and output_shape are checked as every field is
    with safe_open(str(tmp_path / "other.nbd"), framework="pt") as handle:
        header, tensors = dict(handle.metadata()), {key: handle.get_tensor(key) for key in handle.keys()}
    meta = json.loads(header["meta"])
    save_file({**tensors, "output": torch.zeros(4, 64, dtype=torch.int32)}, str(tmp_path / "int.nbd"), metadata=header)
    with pytest.raises(nbd.TrajectoryFileError, match="field tensor output must be a floating-point tensor"):
        nbd.Trajectory.load(tmp_path / "int.nbd")
    meta["params"]["output_shape"] = [4, 63]
    save_file({k: v for k, v in tensors.items() if k != "output"}, str(tmp_path / "shape.nbd"),
              metadata={**header, "meta": json.dumps(meta)})
    with pytest.raises(nbd.TrajectoryFileError, match="field params.output_shape must be a shape of 256 elements"):
        nbd.Trajectory.load(tmp_path / "shape.nbd")

    # a stopped run records no output (what pipe(...) returned is not the run's end)
    control = nbd.RunControl()
    stopped = nbd.trace(other, PROMPT, steps=2, guidance=3.0, seed=1, control=control,
                        on_step=lambda tr, step: control.stop())
    assert stopped.stopped and len(stopped) == 1 and stopped.output is None
