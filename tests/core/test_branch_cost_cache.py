"""The prompt-encoding cache that keeps a branch's fixed cost small (benchmarks/branch_cost.py).

Text-encoder calls are counted with a real forward hook; pipelines are the tiny real ones.
"""
import gc
import weakref

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core import encode_cache
from nbdiffuse.testing import tiny_sd_pipeline

PROMPT = "small blue square at the top"


@pytest.fixture
def encoder_calls(model_calls):
    """encoder_calls(pipe) -> a counter of that pipeline's text-encoder calls."""
    return lambda pipe: model_calls(pipe.text_encoder)


@pytest.fixture
def own_pipe():
    """A pipeline of our own, for tests that change its text encoder."""
    return tiny_sd_pipeline()


def same_steps(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.latents, y.latents) and torch.equal(x.eps_cond, y.eps_cond)
        and (x.eps_uncond is None) == (y.eps_uncond is None)
        and (x.eps_uncond is None or torch.equal(x.eps_uncond, y.eps_uncond))
        for x, y in zip(a.steps, b.steps))


def test_a_branch_that_keeps_the_prompt_does_not_run_the_text_encoder(sd_pipe, encoder_calls):
    encode_cache.clear(sd_pipe)
    calls = encoder_calls(sd_pipe)
    traj = nbd.trace(sd_pipe, PROMPT, steps=6, guidance=4.0, seed=5, scheduler="dpmpp_2m")
    assert calls.count > 0
    after_trace = calls.count
    cached = nbd.branch(sd_pipe, traj, at=2, guidance=9.0)
    same = nbd.branch(sd_pipe, traj, at=3)
    assert calls.count == after_trace
    # Bit for bit what encoding afresh gives, and a no-change branch is the parent.
    encode_cache.clear(sd_pipe)
    fresh = nbd.branch(sd_pipe, traj, at=2, guidance=9.0)
    assert calls.count > after_trace
    assert same_steps(cached, fresh)
    assert same_steps(same, traj)


def test_a_changed_prompt_negative_or_size_encodes_again(sd_pipe, encoder_calls):
    encode_cache.clear(sd_pipe)
    calls = encoder_calls(sd_pipe)
    traj = nbd.trace(sd_pipe, PROMPT, steps=4, guidance=4.0, seed=5)
    seen = calls.count
    for change in ({"prompt": "big green star"}, {"negative_prompt": "red"}):
        child = nbd.branch(sd_pipe, traj, at=1, **change)
        assert calls.count > seen, change
        seen = calls.count
        assert not torch.equal(child.final_latents, traj.final_latents)
    nbd.trace(sd_pipe, PROMPT, steps=2, guidance=4.0, seed=5, height=32, width=32)
    assert calls.count > seen
    seen = calls.count
    nbd.trace(sd_pipe, PROMPT, steps=2, guidance=4.0, seed=5)  # back to the first: still cached
    assert calls.count == seen


def test_another_pipeline_encodes_for_itself(sd_pipe, own_pipe, encoder_calls):
    nbd.trace(sd_pipe, PROMPT, steps=2, seed=5)
    calls = encoder_calls(own_pipe)
    nbd.trace(own_pipe, PROMPT, steps=2, seed=5)
    assert calls.count > 0


def test_a_changed_text_encoder_encodes_again(own_pipe, encoder_calls):
    traj = nbd.trace(own_pipe, PROMPT, steps=4, guidance=4.0, seed=5)
    calls = encoder_calls(own_pipe)
    # Weights written in place (load_state_dict copies under no_grad): same values, new versions.
    own_pipe.text_encoder.load_state_dict(own_pipe.text_encoder.state_dict())
    same = nbd.branch(own_pipe, traj, at=1)
    assert calls.count > 0 and same_steps(same, traj)
    seen = calls.count
    bias = next(p for name, p in own_pipe.text_encoder.named_parameters() if name.endswith("final_layer_norm.bias"))
    with torch.no_grad():
        bias.add_(0.5)
    changed = nbd.branch(own_pipe, traj, at=1)
    assert calls.count > seen and not torch.equal(changed.final_latents, traj.final_latents)
    # A replaced text encoder (another object, even with equal weights).
    calls.close()
    own_pipe.text_encoder = tiny_sd_pipeline().text_encoder
    replaced = encoder_calls(own_pipe)
    back = nbd.branch(own_pipe, traj, at=1)
    assert replaced.count > 0 and same_steps(back, traj)


def test_the_cache_is_bounded_and_goes_with_its_pipeline():
    pipe = tiny_sd_pipeline()
    for i in range(encode_cache.MAX_ENTRIES + 3):
        nbd.trace(pipe, f"{PROMPT} {i}", steps=1, seed=5)
    assert encode_cache.cached_count(pipe) == encode_cache.MAX_ENTRIES
    gone = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert gone() is None  # the cache holds no strong reference to the pipeline


def test_branch_stays_bit_for_bit_for_every_sampler(sd_pipe):
    for name in ("euler", "euler_a", "heun", "lms", "ddim", "ddpm", "dpmpp_2m", "unipc", "deis"):
        traj = nbd.trace(sd_pipe, PROMPT, steps=5, guidance=4.0, seed=3, scheduler=name)
        for at in (0, 3):
            assert same_steps(nbd.branch(sd_pipe, traj, at=at), traj), (name, at)


def test_a_short_replay_reaches_the_same_sampler_state(sd_pipe):
    """DPM-Solver and DEIS replay only their last solver_order steps: long runs, every branch point."""
    from diffusers import DPMSolverMultistepScheduler

    base = sd_pipe.scheduler.config
    samplers = ["dpmpp_2m", "dpmpp_2m_karras", "deis",
                DPMSolverMultistepScheduler.from_config(base, solver_order=3),
                DPMSolverMultistepScheduler.from_config(base, algorithm_type="sde-dpmsolver++")]  # replays all
    for sampler in samplers:
        traj = nbd.trace(sd_pipe, PROMPT, steps=12, guidance=4.0, seed=3, scheduler=sampler)
        for at in (0, 3, 6, 10):
            assert same_steps(nbd.branch(sd_pipe, traj, at=at), traj), (sampler, at)
        changed = nbd.branch(sd_pipe, traj, at=9, guidance=7.0)
        assert changed.steps[:10] == traj.steps[:10]
        assert not torch.equal(changed.final_latents, traj.final_latents)


def test_branch_of_an_image_to_image_run_replays_it_bit_for_bit(sd_pipe):
    import numpy as np

    picture = (np.random.RandomState(0).rand(16, 16, 3) * 255).astype("uint8")
    for name in ("dpmpp_2m", "euler_a", "ddim"):
        traj = nbd.trace(sd_pipe, PROMPT, steps=8, seed=1, scheduler=name, image=picture, strength=0.5)
        for at in (0, 2):
            child = nbd.branch(sd_pipe, traj, at=at)
            assert same_steps(child, traj), (name, at)
            assert child.params["start_step"] == traj.params["start_step"] == 4
            assert child.params["image"] == traj.params["image"]
        with pytest.raises(ValueError, match="nothing is left"):
            nbd.branch(sd_pipe, traj, at=3)
