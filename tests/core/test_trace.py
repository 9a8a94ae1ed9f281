import threading

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.schedulers import make_scheduler

PROMPT = "big red circle on the left"


def bare_latents(pipe, steps, guidance, seed=0, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                output_type="latent", **kw).images[0]


@pytest.mark.parametrize("fixture", ["sd_pipe", "sd_vpred_pipe", "sdxl_pipe", "sd3_pipe"])
def test_trace_matches_diffusers_bit_for_bit(fixture, request):
    pipe = request.getfixturevalue(fixture)
    traj = nbd.trace(pipe, PROMPT, steps=6, guidance=5.0, seed=3)
    assert torch.equal(traj.final_latents, bare_latents(pipe, 6, 5.0, seed=3))


def test_records_every_step(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=5, guidance=4.0, seed=0)
    assert len(traj) == 5 and traj.total_steps == 5 and not traj.stopped
    timesteps = [s.timestep for s in traj]
    assert timesteps == sorted(timesteps, reverse=True)
    for k, step in enumerate(traj):
        assert step.index == k and step.guidance == 4.0 and step.sigma > 0
        for tensor in (step.latents, step.pred_x0, step.eps_cond, step.eps_uncond):
            assert tensor.shape == (4, 8, 8) and tensor.device.type == "cpu" and tensor.dtype == torch.float32
    assert traj.params["prompt"] == PROMPT and traj.params["scheduler"] == "euler"
    assert traj.params["guidance"] == [4.0] * 5
    assert {"nbdiffuse", "diffusers", "torch"} <= set(traj.params["versions"])
    assert traj.params["scheduler_config"]["prediction_type"] == "epsilon"


def test_seed_reproduces_exactly_and_differs_across_seeds(sd_pipe):
    a = nbd.trace(sd_pipe, PROMPT, steps=4, seed=11)
    b = nbd.trace(sd_pipe, PROMPT, steps=4, seed=11)
    c = nbd.trace(sd_pipe, PROMPT, steps=4, seed=12)
    assert torch.equal(a.final_latents, b.final_latents)
    assert not torch.allclose(a.final_latents, c.final_latents)


@pytest.mark.parametrize("name", ["euler", "ddim", "ddpm", "euler_a"])
@pytest.mark.parametrize("fixture", ["sd_pipe", "sd_vpred_pipe"])
def test_pred_x0_equals_the_schedulers_own(name, fixture, request):
    """Where a scheduler does return pred_original_sample, ours must equal it."""
    pipe = request.getfixturevalue(fixture)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=3.0, seed=0, scheduler=name)
    sched = make_scheduler(pipe, name)
    sched.set_timesteps(4)
    latents = traj.initial_latents.clone()
    generator = torch.Generator("cpu").manual_seed(123)
    for k, step in enumerate(traj):
        guided = step.eps_uncond + step.guidance * (step.eps_cond - step.eps_uncond)
        sched.scale_model_input(latents, sched.timesteps[k])
        kwargs = {"generator": generator} if name in ("ddpm", "euler_a") else {}
        out = sched.step(guided[None], sched.timesteps[k], latents, **kwargs)
        torch.testing.assert_close(out.pred_original_sample[0], step.pred_x0, rtol=1e-4, atol=1e-4)
        latents = step.latents[None]


@pytest.mark.parametrize("name", ["euler", "euler_a", "heun", "lms", "ddim", "ddpm", "dpmpp_2m",
                                  "dpmpp_2m_karras", "unipc", "deis", "euler_karras"])
def test_every_scheduler_runs_and_ends_at_its_x0(sd_pipe, name):
    traj = nbd.trace(sd_pipe, PROMPT, steps=5, guidance=3.0, seed=0, scheduler=name)
    assert len(traj) == 5 and traj.params["scheduler"] == name
    assert all(torch.isfinite(s.pred_x0).all() for s in traj)
    # The last step lands on (or next to) its own clean prediction.
    assert (traj[-1].pred_x0 - traj.final_latents).abs().max() < 0.2
    # Heun evaluates the model twice per step (once on the last); the step keeps the second output for replay.
    assert [len(s.extra_outputs) for s in traj] == ([1, 1, 1, 1, 0] if name == "heun" else [0] * 5)


def test_schedulers_lists_the_required_names():
    assert {"euler", "euler_a", "ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_karras", "lms", "heun",
            "unipc"} <= set(nbd.schedulers())


def test_scheduler_choice_does_not_touch_the_pipelines_own(sd_pipe):
    before = type(sd_pipe.scheduler), dict(sd_pipe.scheduler.config)
    nbd.trace(sd_pipe, PROMPT, steps=3, scheduler="dpmpp_2m")
    assert (type(sd_pipe.scheduler), dict(sd_pipe.scheduler.config)) == before


@pytest.mark.parametrize("fixture", ["sd_pipe", "sdxl_pipe", "sd3_pipe"])
@pytest.mark.parametrize("schedule", [[5, 5, 1, 1, 5, 5], [1, 0.5, 4, 4, 1, 1]])
def test_guidance_crosses_one_both_ways(fixture, schedule, request):
    pipe = request.getfixturevalue(fixture)
    traj = nbd.trace(pipe, PROMPT, steps=6, guidance=schedule, seed=0)
    assert traj.guidances == [float(g) for g in schedule]
    assert [s.eps_uncond is not None for s in traj] == [g > 1 for g in schedule]
    assert all(torch.isfinite(s.latents).all() for s in traj)


def test_guidance_callable_and_constant_one(sd_pipe, unet_calls):
    traj = nbd.trace(sd_pipe, PROMPT, steps=4, guidance=lambda k: 1.0 + k)
    assert traj.guidances == [1.0, 2.0, 3.0, 4.0]
    calls = unet_calls(sd_pipe)
    traj = nbd.trace(sd_pipe, PROMPT, steps=4, guidance=1.0)
    assert calls.count == 4 and all(s.eps_uncond is None for s in traj)
    assert torch.equal(traj.final_latents, bare_latents(sd_pipe, 4, 1.0))


def test_guided_x0_reweighs_without_a_model_call(sd_pipe, unet_calls):
    traj = nbd.trace(sd_pipe, PROMPT, steps=4, guidance=5.0, seed=2)
    other = nbd.trace(sd_pipe, PROMPT, steps=4, guidance=9.0, seed=2)
    calls = unet_calls(sd_pipe)
    assert torch.equal(traj.guided_x0(2, 5.0), traj[2].pred_x0)
    # Step 0 sees the same input whatever the guidance, so re-weighing must give the other run's x0.
    torch.testing.assert_close(traj.guided_x0(0, 9.0), other[0].pred_x0, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(traj.guided_x0(1, 1.0), traj[1].pred_x0)
    assert traj.guided_image(1, 2.0).size == (16, 16)
    assert calls.count == 0


def test_guided_x0_explains_missing_uncond(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=2, guidance=1.0)
    with pytest.raises(ValueError, match="ran without guidance"):
        traj.guided_x0(0, 4.0)


def test_v_prediction_x0_is_not_eps_formula(sd_vpred_pipe):
    traj = nbd.trace(sd_vpred_pipe, PROMPT, steps=4, guidance=3.0)
    assert traj.params["prediction_type"] == "v_prediction"
    assert (traj[-1].pred_x0 - traj.final_latents).abs().max() < 1e-4


def test_sdxl_records_and_images(sdxl_pipe):
    traj = nbd.trace(sdxl_pipe, PROMPT, steps=3, guidance=5.0, seed=1)
    assert traj.params["pipeline"] == "StableDiffusionXLPipeline" and traj.params["height"] == 16
    assert traj.image(1, view="xt").size == (16, 16)
    assert traj.image(-1, decoder="full").size == (16, 16)


def test_height_width_change_latent_size(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=2, height=24, width=32)
    assert traj.final_latents.shape == (4, 12, 16) and traj.image(-1).size == (32, 24)


def test_on_step_sees_each_step_as_it_lands(sd_pipe):
    seen = []
    nbd.trace(sd_pipe, PROMPT, steps=4, on_step=lambda traj, step: seen.append((len(traj), step.index)))
    assert seen == [(1, 0), (2, 1), (3, 2), (4, 3)]


def test_error_inside_the_model_keeps_the_steps_done_and_next_run_works(sd_pipe):
    def explode(module, args, output):
        raise RuntimeError("injected fault")

    seen = []
    handle = None

    def arm(traj, step):
        nonlocal handle
        seen.append(traj)
        if step.index == 1:
            handle = sd_pipe.unet.register_forward_hook(explode)

    try:
        with pytest.raises(RuntimeError, match="injected fault"):
            nbd.trace(sd_pipe, PROMPT, steps=5, on_step=arm)
    finally:
        handle.remove()
    traj = seen[-1]
    assert len(traj) == 2 and traj.stopped and "injected fault" in traj.error
    assert len(nbd.trace(sd_pipe, PROMPT, steps=2)) == 2


class TestRunControl:
    def test_stop_after_current_step(self, sd_pipe):
        control = nbd.RunControl()
        traj = nbd.trace(sd_pipe, PROMPT, steps=6, control=control,
                         on_step=lambda t, s: control.stop() if s.index == 2 else None)
        assert len(traj) == 3 and traj.stopped and traj.total_steps == 6

    def test_live_guidance_lands_from_the_next_step(self, sd_pipe):
        control = nbd.RunControl()
        traj = nbd.trace(sd_pipe, PROMPT, steps=6, guidance=6.0, control=control,
                         on_step=lambda t, s: control.set_guidance(1.0) if s.index == 1 else None)
        assert traj.guidances == [6.0, 6.0, 1.0, 1.0, 1.0, 1.0]
        assert traj.params["guidance"] == traj.guidances
        assert traj[2].eps_uncond is None and traj[1].eps_uncond is not None

    def test_pause_step_once_resume_from_another_thread(self, sd_pipe):
        control = nbd.RunControl()
        control.pause()
        result = {}
        worker = threading.Thread(target=lambda: result.setdefault(
            "traj", nbd.trace(sd_pipe, PROMPT, steps=5, guidance=3.0, control=control,
                              on_step=lambda t, s: result.setdefault("live", t))))
        worker.start()
        assert control.wait_until_waiting(30)
        assert "live" not in result  # held before the first step
        control.step_once()
        assert control.wait_until_waiting(30) and len(result["live"]) == 1
        control.set_guidance(7.0)
        control.step_once()
        assert control.wait_until_waiting(30) and len(result["live"]) == 2
        control.resume()
        worker.join(60)
        traj = result["traj"]
        assert len(traj) == 5 and not traj.stopped and traj.guidances == [3.0, 7.0, 7.0, 7.0, 7.0]

    def test_stop_while_paused_ends_cleanly(self, sd_pipe):
        control = nbd.RunControl()
        control.pause()
        out = {}
        worker = threading.Thread(target=lambda: out.setdefault("t", nbd.trace(sd_pipe, PROMPT, steps=4,
                                                                                control=control)))
        worker.start()
        assert control.wait_until_waiting(30)
        control.stop()
        worker.join(30)
        assert not worker.is_alive() and len(out["t"]) == 0 and out["t"].stopped

    def test_bad_live_guidance_is_refused(self):
        control = nbd.RunControl()
        with pytest.raises(ValueError, match="guidance"):
            control.set_guidance(float("nan"))
        assert control.guidance is None


@pytest.mark.parametrize("scheduler", ["euler", "heun"])
def test_flow_matching_x0_and_guided_x0(sd3_pipe, scheduler):
    traj = nbd.trace(sd3_pipe, PROMPT, steps=4, guidance=5.0, seed=0, scheduler=scheduler)
    other = nbd.trace(sd3_pipe, PROMPT, steps=4, guidance=9.0, seed=0, scheduler=scheduler)
    assert traj.params["family"] == "stable-diffusion-3" and traj[0].sigma == 1.0
    # x0 = x_t - sigma * v: the last step lands on its own prediction.
    torch.testing.assert_close(traj[-1].pred_x0, traj.final_latents, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(traj.guided_x0(0, 9.0), other[0].pred_x0, rtol=1e-4, atol=1e-4)
    assert nbd.schedulers(sd3_pipe) == ["euler", "heun"]
    with pytest.raises(ValueError, match="scheduler must be None or one of euler, heun"):
        nbd.trace(sd3_pipe, PROMPT, steps=2, scheduler="ddim")


def test_sd3_with_dynamic_shifting_runs_heun_too(sd3_pipe):
    # SD3.5-style schedulers shift by resolution (`mu`); FlowMatchHeun takes no `mu` and keeps its own shift.
    from diffusers import FlowMatchEulerDiscreteScheduler

    original = sd3_pipe.scheduler
    sd3_pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(original.config, use_dynamic_shifting=True)
    try:
        euler = nbd.trace(sd3_pipe, "a red circle", steps=3, seed=0)
        heun = nbd.trace(sd3_pipe, "a red circle", steps=3, seed=0, scheduler="heun")
    finally:
        sd3_pipe.scheduler = original
    assert len(euler) == len(heun) == 3 and heun.params["scheduler_class"] == "FlowMatchHeunDiscreteScheduler"


def test_device_and_dtype_follow_the_pipeline_when_it_changes():
    # nbdiffuse remembers a pipeline's device and dtype (diffusers' look-up walks every module),
    # and looks again when the model is converted, as a later run must run in the new dtype.
    from nbdiffuse.core.families import family_for
    from nbdiffuse.testing import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    assert family_for(pipe).dtype == torch.float32
    assert nbd.trace(pipe, "a red circle", steps=1)[0].latents.dtype == torch.float32
    pipe.to(dtype=torch.bfloat16)
    assert family_for(pipe).dtype == torch.bfloat16 and family_for(pipe).device.type == "cpu"
    assert nbd.trace(pipe, "a red circle", steps=1).initial_latents.dtype == torch.bfloat16
