"""Branch: continue a trajectory from the state after step k with changed settings.

Samplers keep state between steps (multistep solvers hold past outputs, ancestral ones
draw noise from the generator), so the state after step k is rebuilt by replaying the
recorded steps 0..k through a fresh scheduler: scheduler.step() only, no model call.
A branch therefore costs only the steps it runs.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .control import RunControl
from .families import family_for
from .prediction import sigma_at
from .schedulers import make_scheduler, scheduler_from_params
from .trace import Run, input_scale, model_input, pipe_lock, scheduler_step_kwargs
from .trajectory import Trajectory
from .validate import check_callable, check_prompt, check_seed, check_steps, guidance_schedule

BRANCH_CHANGES = ("prompt", "negative_prompt", "guidance", "scheduler", "steps", "seed", "control", "on_step")


def branch(pipe: Any, traj: Trajectory, at: int, **changes: Any) -> Trajectory:
    """Continue `traj` from the state after step `at`.

    changes: prompt, negative_prompt, guidance (a number, a per-step sequence of the new
    run's length, or a callable step -> number; applies after `at`), scheduler and steps
    (the rest of the run is re-planned on the new schedule from the current noise level),
    seed (seeds the noise that stochastic samplers draw after `at`), control, on_step.
    With no changes the original remaining steps are replayed exactly.
    """
    unknown = sorted(set(changes) - set(BRANCH_CHANGES))
    if unknown:
        raise TypeError(f"branch() got unknown change(s) {', '.join(unknown)}; allowed: {', '.join(BRANCH_CHANGES)}")
    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be an nbd.Trajectory, got {type(traj).__name__}")
    family = family_for(pipe)
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < len(traj):
        raise ValueError(f"at must be a step index in 0..{len(traj) - 1}, got {at!r}")
    shape = tuple(traj.initial_latents.shape[1:])
    if family.latent_channels != shape[0]:
        raise ValueError(f"pipe has {family.latent_channels} latent channels, the trajectory {shape[0]}: "
                         "branch with the pipeline that made it")
    p = traj.params
    prompt = check_prompt(changes.get("prompt", p["prompt"]))
    negative = check_prompt(changes.get("negative_prompt", p["negative_prompt"]), "negative_prompt", True) or ""
    seed = check_seed(changes.get("seed", p["seed"]))
    control = changes.get("control")
    if control is not None and not isinstance(control, RunControl):
        raise TypeError(f"control must be an nbd.RunControl or None, got {type(control).__name__}")
    on_step = check_callable("on_step", changes.get("on_step"))
    replan = "scheduler" in changes or ("steps" in changes and changes["steps"] != p["steps"])

    if not replan and at >= int(p["steps"]) - 1:
        raise ValueError(f"at={at} is the last step: nothing is left to run; pick an earlier step, "
                         "or change scheduler/steps to re-plan the rest")
    parent_sched = scheduler_from_params(p["scheduler_class"], p["scheduler_config"])
    if replan:
        sched = make_scheduler(pipe, changes.get("scheduler")) if "scheduler" in changes else \
            scheduler_from_params(p["scheduler_class"], p["scheduler_config"])
        steps_in_sched = check_steps(changes.get("steps", p["steps"]))
    else:
        sched, steps_in_sched = parent_sched, int(p["steps"])
    total = _planned_total(family, sched, steps_in_sched, at, parent_sched, p, traj, replan)
    schedule = _branch_schedule(changes, traj, at, total)

    run = Run(pipe, family, sched, prompt, negative, total, schedule, seed, p["height"], p["width"], control, on_step)
    run.check_prompts()
    params = run.params()
    params.update(parent=traj.id, branched_at=at, steps=total)
    params["guidance"] = params["guidance_plan"] = schedule
    if not replan:
        params["scheduler"] = p["scheduler"]

    with pipe_lock(pipe), torch.no_grad():
        device = family.device
        run.cond = family.encode(*run.encoded, (p["height"], p["width"]))
        child = Trajectory(params, initial_latents=traj.initial_latents, steps=list(traj.steps[: at + 1]),
                           parent=traj, branched_at=at, approx=traj.approx, pipe=pipe)
        run.trajectory = child
        if replan:
            i, latents = _enter_new_schedule(family, sched, steps_in_sched, traj, at, parent_sched, device)
            run.generator = torch.Generator("cpu").manual_seed(seed)
        else:
            i, latents = _replay(family, sched, traj, at, device, run.generator)
            if seed != p["seed"]:
                run.generator = torch.Generator("cpu").manual_seed(seed)
        return run._loop(child, latents, i=i, k=at + 1)


def _evals_through(traj: Trajectory, at: int) -> int:
    """Model evaluations (positions in scheduler.timesteps) used by steps 0..at."""
    return sum(1 + len(traj.steps[j].extra_outputs) for j in range(at + 1))


def _replay(family, sched, traj: Trajectory, at: int, device, generator) -> tuple[int, torch.Tensor]:
    """Bring a fresh scheduler (and the generator) to the state after step `at`."""
    p = traj.params
    family.set_timesteps(sched, int(p["steps"]), p["height"], p["width"])
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(0)
    family.initial_latents(p["height"], p["width"], generator, sched)  # consume the generator as the run did
    dtype = family.dtype
    latents = traj.initial_latents.to(device, dtype)
    step_kwargs = scheduler_step_kwargs(sched, generator)
    i = 0
    for j in range(at + 1):
        step = traj.steps[j]
        outputs = [_guided_output(step, device, dtype)] + [e.to(device, dtype) for e in step.extra_outputs]
        for out in outputs:
            model_input(sched, latents, sched.timesteps[i])  # some samplers count on this call
            latents = sched.step(out[None], sched.timesteps[i], latents, **step_kwargs,
                                 return_dict=False)[0]
            i += 1
        latents = step.latents.to(device, dtype)[None]
    return i, latents


def _guided_output(step, device, dtype) -> torch.Tensor:
    """The output the sampler got at this step, recomputed on the run's device as the loop did."""
    cond = step.eps_cond.to(device, dtype)
    if step.eps_uncond is None:
        return cond
    uncond = step.eps_uncond.to(device, dtype)
    return uncond + step.guidance * (cond - uncond)


def _noise_level(family, parent_sched, p: dict, traj: Trajectory, at: int) -> float:
    family.set_timesteps(parent_sched, int(p["steps"]), p["height"], p["width"])
    i = _evals_through(traj, at)
    return sigma_at(parent_sched, i) if i < len(parent_sched.timesteps) else 0.0


def _start_index(sched, level: float) -> int:
    """The first-order position whose noise level is closest to `level` (in log sigma)."""
    order = int(getattr(sched, "order", 1))
    positions = range(0, len(sched.timesteps), order)
    def distance(i: int) -> float:
        return abs(math.log(max(sigma_at(sched, i), 1e-8)) - math.log(max(level, 1e-8)))
    return min(positions, key=distance)


def _planned_total(family, sched, steps_in_sched, at, parent_sched, p, traj, replan) -> int:
    if not replan:
        return int(p["steps"])
    family.set_timesteps(sched, steps_in_sched, p["height"], p["width"])
    start = _start_index(sched, _noise_level(family, parent_sched, p, traj, at))
    order = int(getattr(sched, "order", 1))
    return at + 1 + len(range(start, len(sched.timesteps), order))


def _enter_new_schedule(family, sched, steps_in_sched, traj, at, parent_sched, device) -> tuple[int, torch.Tensor]:
    """Re-express the latents after `at` in the new sampler's form at its nearest noise level."""
    p = traj.params
    start = _start_index(sched, _noise_level(family, parent_sched, p, traj, at))
    family.set_timesteps(sched, steps_in_sched, p["height"], p["width"])
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    step = traj.steps[at]
    x_vp = step.latents.to(device, torch.float32)[None] * step.xt_scale
    dtype = step.latents.dtype
    latents = (x_vp / input_scale(sched, start, x_vp)).to(dtype)
    return start, latents


def _branch_schedule(changes: dict, traj: Trajectory, at: int, total: int) -> list[float]:
    done = traj.guidances[: at + 1]
    if "guidance" not in changes:
        # the parent's guidance as used (or planned, past where it stopped), continued with its last value
        rest = [traj.params["guidance"][k] if k < len(traj.params["guidance"]) else traj.params["guidance"][-1]
                for k in range(at + 1, total)]
        return done + rest
    g = changes["guidance"]
    if not callable(g) and hasattr(g, "__len__") and not isinstance(g, (str, bytes)) and len(g) == total - at - 1:
        g = [0.0] * (at + 1) + list(g)  # a schedule for the remaining steps only
    return done + guidance_schedule(g, total)[at + 1:]
