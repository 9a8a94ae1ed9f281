"""x0 of a pipeline that runs its own loop (core/sampler_tap.py): read from what its sampler is given, it is the
same x0 nbdiffuse's own loop records. A family's pipeline run through the generic path (pipe(...) with the step
callback, as any watched pipeline runs) must give the family run's x0 bit for bit, for samplers of each kind."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse import testing
from nbdiffuse.core.generic import prepare_generic
from nbdiffuse.core.sampler_tap import SamplerTap

PROMPT = "a red circle"


def watched(pipe, scheduler=None, steps=4):
    """The run pipe(...) makes with nbdiffuse watching it through its step callback."""
    return prepare_generic(pipe, PROMPT, "", steps, 5.0, 1, scheduler, 32, 32).execute()


@pytest.mark.parametrize("build, scheduler", [
    (testing.tiny_sd_pipeline, None), (testing.tiny_sd_pipeline, "euler"), (testing.tiny_sd_pipeline, "dpmpp_2m"),
    (testing.tiny_sd_pipeline, "heun"), (testing.tiny_sd_pipeline, "ddim"),
    (lambda: testing.tiny_sd_pipeline(prediction_type="v_prediction"), "euler"),
    (testing.tiny_sdxl_pipeline, None), (testing.tiny_sd3_pipeline, None), (testing.tiny_flux_pipeline, None),
], ids=["sd", "sd-euler", "sd-dpmpp_2m", "sd-heun", "sd-ddim", "sd-v", "sdxl", "sd3", "flux-packed"])
def test_a_watched_runs_x0_is_the_familys_bit_for_bit(build, scheduler):
    pipe = build()
    own = nbd.trace(pipe, PROMPT, steps=4, guidance=5.0, seed=1, height=32, width=32, scheduler=scheduler)
    seen = watched(pipe, scheduler)
    assert seen.has_x0 and len(seen) == len(own) > 0
    for a, b in zip(own, seen):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.pred_x0, b.pred_x0)
        assert a.x0_coeff == pytest.approx(b.x0_coeff)
    assert not seen.capabilities["what_if"] and not seen.capabilities["branch"]


def test_what_a_sampler_gives_no_x0_for_leaves_the_step_without_one():
    pipe = testing.tiny_sd_pipeline()
    sched = pipe.scheduler
    tap = SamplerTap(sched)
    sched.set_timesteps(4)
    x, t = torch.zeros(1, 4, 8, 8), sched.timesteps[0]
    tap.seen((torch.zeros(1, 4, 4, 4), t, x), {})  # an output of another shape than x_t
    assert tap.x0(1.0) == (None, 0.0)
    tap.seen((torch.ones(1, 8, 8, 8), t, x), {})  # x_t's channels and a learned variance: the first half
    got, b = tap.x0(1.0)
    assert got.shape == x.shape and b < 0
    tap.seen((), {"model_output": torch.ones(1, 4, 8, 8), "timestep": t, "sample": x})  # passed by name
    assert tap.x0(None)[0] is None  # no noise level: no x0
