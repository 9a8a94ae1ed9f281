"""nbdiffuse.core.schedule_math against diffusers' own schedulers: add_noise, alphas_cumprod, sigmas, timesteps."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler

from nbdiffuse.core import schedule_math as sm
from nbdiffuse.core.schedulers import make_scheduler

SCHEDULES = [
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
    {"beta_schedule": "squaredcos_cap_v2"},
]


@pytest.mark.parametrize("config", SCHEDULES, ids=[c["beta_schedule"] for c in SCHEDULES])
@pytest.mark.parametrize("t", [0, 1, 250, 500, 999])
def test_forward_noise_is_ddpm_add_noise(config, t):
    ddpm = DDPMScheduler(num_train_timesteps=1000, **config)
    generator = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    expected = ddpm.add_noise(x0, eps, torch.tensor([t]))
    torch.testing.assert_close(sm.forward_noise(ddpm, x0, t, eps), expected, rtol=1e-5, atol=1e-5)


def test_forward_noise_of_a_pipeline_matches_its_schedule(pipe):
    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    for t in (10, 600):
        torch.testing.assert_close(sm.forward_noise(pipe, x0, t, eps), ddim.add_noise(x0, eps, torch.tensor([t])),
                                   rtol=1e-5, atol=1e-5)


def test_euler_add_noise_is_the_same_sample_over_sqrt_abar(pipe):
    euler = make_scheduler(pipe, "euler")
    euler.set_timesteps(10)
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = euler.timesteps[3]
    abar = float(euler.alphas_cumprod[int(t)])
    ours = sm.forward_noise(pipe, x0, int(t), eps) / math.sqrt(abar)
    torch.testing.assert_close(ours, euler.add_noise(x0, eps, t.reshape(1)), rtol=1e-4, atol=1e-4)


def test_schedule_table_equals_the_schedulers_numbers(pipe):
    table = sm.schedule_table(pipe)
    abar = pipe.scheduler.alphas_cumprod.double()
    assert len(table) == 1000 and table.timesteps[:3] == [0.0, 1.0, 2.0]
    assert table.abar == pytest.approx(abar.tolist(), rel=1e-6)
    assert table.snr_db == pytest.approx((10 * torch.log10(abar / (1 - abar))).tolist(), rel=1e-6)
    # Before set_timesteps, Euler's sigmas are the whole training schedule, noisiest first.
    euler_sigmas = EulerDiscreteScheduler.from_config(pipe.scheduler.config).sigmas[:-1].flip(0)
    assert table.sigma == pytest.approx(euler_sigmas.tolist(), rel=1e-4)
    assert all(a > b for a, b in zip(table.abar, table.abar[1:])), "abar falls as t grows"


@pytest.mark.parametrize("name", ["euler", "euler_karras", "dpmpp_2m_karras", "lms", "unipc"])
def test_sampler_points_are_the_schedulers_timesteps_and_sigmas(pipe, name):
    points = sm.sampler_points(pipe, name, 7)
    sched = make_scheduler(pipe, name)
    sched.set_timesteps(7)
    assert points.name == name and points.steps == 7
    assert points.timesteps == pytest.approx(sched.timesteps.double().tolist())
    assert points.sigma == pytest.approx(sched.sigmas[:-1].double().tolist(), rel=1e-6)
    assert points.abar == pytest.approx([1 / (1 + s * s) for s in points.sigma])
    assert points.snr_db == pytest.approx([-20 * math.log10(s) for s in points.sigma])


def test_sampler_points_without_sigmas_use_alphas_cumprod(pipe):
    points = sm.sampler_points(pipe, "ddim", 5)
    ddim = make_scheduler(pipe, "ddim")
    ddim.set_timesteps(5)
    abar = [float(ddim.alphas_cumprod[int(t)]) for t in ddim.timesteps]
    assert points.abar == pytest.approx(abar, rel=1e-5)


def test_second_order_samplers_have_one_point_per_step(pipe):
    points = sm.sampler_points(pipe, "heun", 6)
    assert len(points.timesteps) == 6
    assert points.timesteps == sorted(points.timesteps, reverse=True)


@pytest.mark.parametrize("name", ["euler", "heun", "ddim"])
def test_sampler_points_are_what_trace_runs(pipe, name):
    import nbdiffuse as nbd

    traj = nbd.trace(pipe, "a red circle", steps=4, scheduler=name, guidance=1.0)
    points = sm.sampler_points(pipe, name, 4)
    assert points.timesteps == pytest.approx([s.timestep for s in traj])
    assert points.sigma == pytest.approx([s.sigma for s in traj], rel=1e-6)


def test_flow_matching_forward_noise_is_scale_noise(sd3_pipe):
    sched = make_scheduler(sd3_pipe, None)
    sched.set_timesteps(5)
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = sched.timesteps[2]
    torch.testing.assert_close(sm.forward_noise(sd3_pipe, x0, float(t), eps), sched.scale_noise(x0, t.reshape(1), eps),
                               rtol=1e-5, atol=1e-5)
    assert sm.schedule_table(sd3_pipe).flow is True


def test_bad_input_names_the_parameter(pipe):
    with pytest.raises(ValueError, match="t must be an int between 0 and 999, got 1000"):
        sm.coefficients(pipe, 1000)
    with pytest.raises(TypeError, match="t must be an int"):
        sm.coefficients(pipe, "5")
    with pytest.raises(ValueError, match="noise must have the shape of x0"):
        sm.forward_noise(pipe, torch.zeros(1, 4, 8, 8), 5, torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="scheduler must be None or one of"):
        sm.sampler_points(pipe, "nope", 5)
    with pytest.raises(ValueError, match="steps must be an int between 1 and 1000, got 0"):
        sm.sampler_points(pipe, "euler", 0)
    with pytest.raises(TypeError, match="expected a diffusers pipeline or scheduler"):
        sm.schedule_table(42)
