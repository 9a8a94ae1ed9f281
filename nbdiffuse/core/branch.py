"""Branch: continue a trajectory from the state after step k with changed settings.

Samplers keep state between steps (multistep solvers hold past outputs, ancestral ones
draw noise from the generator), so the state after step k is rebuilt by replaying the
recorded steps 0..k through a fresh scheduler: scheduler.step() only, no model call.
A branch therefore costs the steps it runs plus a small fixed cost: that replay (~1% of a
model step per replayed step on the embedded model; only the last few steps for DPM-Solver and
DEIS), one device look-up, no text encoding when the prompt is kept (encode_cache).
benchmarks/branch_cost.py measures it.

prepare_branch() holds every check and the plan (no model work): nbd.branch runs it and then
executes; the Explorer calls it to refuse bad input before its worker thread starts. The rest of
the run is run.Run.resume(), the same loop a traced run uses.
"""
from __future__ import annotations

import copy
import json
import math
import threading
from collections import OrderedDict
from typing import Any

import torch

from . import controlnet, controlnet_flux, encode_cache, img2img, inpaint_loop, pag
from .capabilities import run_reason, watched_reason
from .families import family_for, is_generic
from .locks import model_turn
from .model_identity import branch_notice
from .params import RunParams
from .prediction import sigma_at
from .run import Run, input_scale, model_input, scheduler_step_kwargs
from .run_args import check_run_args
from .schedulers import make_scheduler, scheduler_from_params
from .trajectory import Trajectory
from .validate import check_step_at, guidance_schedule
from .walks import branch_walk, walk_conditioning

BRANCH_CHANGES = ("prompt", "negative_prompt", "guidance", "scheduler", "steps", "seed", "control", "on_step",
                  *controlnet.BRANCH_CHANGES, *pag.KEYWORDS)


def branch(pipe: Any, traj: Trajectory, at: int, **changes: Any) -> Trajectory:
    """Continue `traj` from the state after step `at`.

    changes: prompt, negative_prompt, guidance (a number, a per-step sequence of the new
    run's length, or a callable step -> number; applies after `at`), scheduler and steps
    (the rest of the run is re-planned on the new schedule from the current noise level),
    seed (seeds the noise that stochastic samplers draw after `at`), control, on_step;
    a ControlNet run's control_image, control_scale (as guidance), control_start, control_end,
    control_guess_mode and control_mode (control_scale=0: "what if no control from here"; core/controlnet.py);
    a PAG run's pag_scale and pag_adaptive_scale (core/pag.py).
    With no changes the original remaining steps are replayed exactly.
    """
    return prepare_branch(pipe, traj, at, **changes).execute()


def prepare_branch(pipe: Any, traj: Trajectory, at: int, **changes: Any) -> "PreparedBranch":
    """Check a branch and plan it without touching the model (branch() = prepare_branch().execute()).

    Every refusal a branch can meet happens here, so a caller that runs the branch later (the
    Explorer, in its worker thread) refuses bad input at once by calling this first."""
    unknown = sorted(set(changes) - set(BRANCH_CHANGES))
    if unknown:
        raise TypeError(f"branch() got unknown change(s) {', '.join(unknown)}; allowed: {', '.join(BRANCH_CHANGES)}")
    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be an nbd.Trajectory, got {type(traj).__name__}")
    if not traj.capabilities["branch"]:  # a run of a pipeline watched through its step callback (generic.py)
        raise ValueError(run_reason(traj.params, "branching"))
    if is_generic(pipe):
        raise ValueError(watched_reason(type(pipe).__name__, "branching"))
    family = family_for(pipe)
    check_step_at(at, len(traj))
    notice = branch_notice(traj, pipe, at)  # core/model_identity.py: refused across families, warned across models
    shape = tuple(traj.initial_latents.shape[1:])
    if family.latent_channels != shape[0]:
        raise ValueError(f"pipe has {family.latent_channels} latent channels, the trajectory {shape[0]}: "
                         "branch with the pipeline that made it")
    p = traj.params
    if p.get("mask") is not None and (traj.mask is None or traj.start_picture is None):
        raise ValueError("this inpainting run's start picture or mask was not kept with it, and a branch goes on "
                         "putting the kept part of the picture back: trace the run again to branch it")
    prompt, negative, steps, seed, control, on_step = check_run_args(
        changes.get("prompt", p["prompt"]), changes.get("negative_prompt", p["negative_prompt"]),
        changes.get("steps", p["steps"]), changes.get("seed", p["seed"]), changes.get("control"),
        changes.get("on_step"))
    replan = "scheduler" in changes or ("steps" in changes and changes["steps"] != p["steps"])
    runs = int(p["steps"]) - _start_step(p)  # steps the parent's run makes (image to image skips the first)

    if not replan and at >= runs - 1:
        raise ValueError(f"at={at} is the last step: nothing is left to run; pick an earlier step, "
                         "or change scheduler/steps to re-plan the rest")
    parent_sched = _fresh_scheduler(p["scheduler_class"], p["scheduler_config"])
    start = None
    if replan:
        sched = make_scheduler(pipe, changes.get("scheduler")) if "scheduler" in changes else \
            _fresh_scheduler(p["scheduler_class"], p["scheduler_config"])
        start = _replan(family, sched, steps, traj, at, parent_sched)  # noise level and start, once
        total = at + 1 + len(range(start, len(sched.timesteps), int(getattr(sched, "order", 1))))
    else:
        sched, total = parent_sched, runs
    schedule = _branch_schedule(changes, traj, at, total)
    control_plan = controlnet.branch_plan(pipe, traj, at, total, changes)
    pag_plan = pag.branch_pag(pipe, p, changes, at, total)

    run = Run(pipe, family, sched, prompt, negative, total, schedule, seed, p["height"], p["width"], control, on_step)
    run.check_prompts()
    run.pag = pag_plan
    if control_plan is not None:
        run.controlnet = controlnet.ControlStep(control_plan, family, p["height"], p["width"], control,
                                                p["seed"])  # SD3, Flux: the parent's control latents
        run.controlnet.first = 0 if replan else _start_step(p) * int(getattr(sched, "order", 1))
    return PreparedBranch(run, traj, at, start, notice)


class PreparedBranch:
    """A checked, planned branch; execute() does the model work (in whatever thread calls it)."""

    def __init__(self, run: Run, parent: Trajectory, at: int, start: int | None, notice: str | None = None):
        self.run, self.parent, self.at = run, parent, at
        self.start = start  # the re-planned run's first position in its scheduler, or None (same schedule)
        self.notice = notice  # another model of the family continues the run (model_identity.branch_notice)

    def params(self) -> RunParams:
        """The child's params: the run's, with where it came from and, on the same schedule, the parent's count."""
        run, p, at = self.run, self.parent.params, self.at
        params = run.params()
        params.update(parent=self.parent.id, branched_at=at, steps=run.steps)
        params["notices"] += [self.notice] if self.notice else []
        params["guidance"] = params["guidance_plan"] = run.schedule
        if self.start is None:
            params["scheduler"] = p["scheduler"]
            params.update(steps=p["steps"], start_step=_start_step(p))  # the parent's schedule, as it counted it
        for key in ("strength", "image", "mask", "attention"):  # the picture, its mask; the words the kept maps show
            if p.get(key) is not None:
                params[key] = p[key]
        walk = branch_walk(p, self.keeps_prompt)  # a walk's run: its start noise, its blended prompt (core/walks.py)
        if walk is not None:
            params["walk"] = walk
        return params

    @property
    def keeps_prompt(self) -> bool:
        p = self.parent.params
        return (self.run.prompt, self.run.negative_prompt) == (p["prompt"], p["negative_prompt"] or "")

    def execute(self) -> Trajectory:
        run, traj, at = self.run, self.parent, self.at
        p, family, sched = traj.params, run.family, run.scheduler
        params = self.params()
        with model_turn(run.pipe, run.control) as held, torch.no_grad():
            if not held:  # stopped while another run held the model: the parent's steps, none of its own
                child = Trajectory(params, initial_latents=traj.initial_latents, steps=list(traj.steps[: at + 1]),
                                   parent=traj, branched_at=at, approx=traj.approx, pipe=run.pipe)
                child.start_picture, child.mask, child.stopped = traj.start_picture, traj.mask, True
                run.trajectory = child
                return child
            device, dtype = family.device, family.dtype
            # The parent encoded this prompt: a branch that keeps it reuses that encoding (encode_cache).
            run.cond = encode_cache.encode(family, *run.encoded, (p["height"], p["width"]))
            walked = (p.get("walk") or {}).get("prompt")
            if walked is not None and self.keeps_prompt:  # a prompt walk's run: the blend it ran on
                run.cond = walk_conditioning(run, walked["from"], walked["to"], walked["t"])
            # The steps it shares with a loaded parent keep the pictures the parent's model drew of them.
            child = Trajectory(params, initial_latents=traj.initial_latents, steps=list(traj.steps[: at + 1]),
                               parent=traj, branched_at=at, approx=traj.approx, pipe=run.pipe,
                               saved_frames={key: data for key, data in traj.saved_frames.items() if key[0] <= at})
            if run.controlnet is not None:
                child.control_image = run.controlnet.plan.image
            child.start_picture, child.mask = traj.start_picture, traj.mask
            if traj.mask is not None:  # inpainting: the parent's masks, latents and noise (core/inpaint_loop.py)
                run.inpainting = child.inpainting = inpaint_loop.state_of(family, traj)
            run.trajectory = child
            if self.start is not None:
                i, latents = self.start, _enter_new_schedule(sched, self.start, traj, at, device)
                run.generator = torch.Generator("cpu").manual_seed(run.seed)
            else:
                i, latents = _replay(family, sched, traj, at, device, dtype, run.generator)
                if run.seed != p["seed"]:
                    run.generator = torch.Generator("cpu").manual_seed(run.seed)
            return run.resume(child, latents, position=i, step=at + 1)


_SCHEDULER_PROTOTYPES_MAX = 16
_scheduler_prototypes: "OrderedDict[str, Any]" = OrderedDict()
_prototypes_guard = threading.Lock()


def _fresh_scheduler(class_name: str, config: dict) -> Any:
    """scheduler_from_params(), as a copy of an untouched prototype: from_config inspects
    signatures and validates the config (~1.2 ms); a deep copy of a never-stepped scheduler is
    the same object state for a third of that."""
    key = class_name + "\n" + json.dumps(config, sort_keys=True, default=repr)
    with _prototypes_guard:
        prototype = _scheduler_prototypes.get(key)
        if prototype is not None:
            _scheduler_prototypes.move_to_end(key)
    if prototype is None:
        prototype = scheduler_from_params(class_name, config)
        with _prototypes_guard:
            _scheduler_prototypes[key] = prototype
            while len(_scheduler_prototypes) > _SCHEDULER_PROTOTYPES_MAX:
                _scheduler_prototypes.popitem(last=False)
    return copy.deepcopy(prototype)


def _evals_through(traj: Trajectory, at: int) -> int:
    """Model evaluations (positions in scheduler.timesteps) used by steps 0..at."""
    return sum(1 + len(traj.steps[j].extra_outputs) for j in range(at + 1))


def _replay(family, sched, traj: Trajectory, at: int, device, dtype, generator) -> tuple[int, torch.Tensor]:
    """Bring a fresh scheduler (and the generator) to the state after step `at`."""
    p = traj.params
    family.set_timesteps(sched, int(p["steps"]), p["height"], p["width"])
    window = _state_window(sched)
    first = 0 if window is None else max(0, at + 1 - window)
    i = _start_step(p) * int(getattr(sched, "order", 1)) + _evals_through(traj, first - 1)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(i)
    _consume_start_noise(family, traj, generator, sched)
    layout = traj.initial_latents.to(device, dtype)  # the run's latents kept this memory layout throughout

    def as_run_latents(recorded: torch.Tensor) -> torch.Tensor:
        # Same values in the same strides as the run had (image to image runs are channels-last,
        # and a UNet may pick another kernel for other strides: last-digit differences).
        return torch.empty_like(layout).copy_(recorded.reshape(layout.shape))

    latents = layout if first == 0 else as_run_latents(traj.steps[first - 1].latents)
    step_kwargs = scheduler_step_kwargs(sched, generator)
    for j in range(first, at + 1):
        step = traj.steps[j]
        outputs = [_guided_output(step, device, dtype)] + [e.to(device, dtype) for e in step.extra_outputs]
        for out in outputs:
            model_input(sched, latents, sched.timesteps[i])  # some samplers count on this call
            latents = sched.step(out[None], sched.timesteps[i], latents, **step_kwargs,
                                 return_dict=False)[0]
            i += 1
        latents = as_run_latents(step.latents)
    return i, latents


def _start_step(p: dict) -> int:
    """The first step of the schedule the run made (image to image starts later; 0 otherwise)."""
    return int(p.get("start_step") or 0)


def _consume_start_noise(family, traj: Trajectory, generator, sched) -> None:
    """Draw from the generator what the run drew before its first step, so that samplers that
    draw noise per step (ancestral, DDPM) continue with the same numbers."""
    p = traj.params
    controlnet_flux.skip_draws(family, traj, generator)  # a Flux ControlNet run drew its control latents first
    if p.get("mask") is not None:  # inpainting: the picture's latents (where drawn), the noise, the masked picture's
        inpaint_loop.skip_start_draws(family, tuple(traj.initial_latents.shape), generator, float(p["strength"]))
        return
    if not _start_step(p) and p.get("image") is None:
        family.initial_latents(p["height"], p["width"], generator, sched)
        return
    img2img.skip_start_draws(family, tuple(traj.initial_latents.shape), generator)


def _state_window(sched) -> int | None:
    """How many of the last steps fix a sampler's state (None: all of them).

    DPM-Solver(++) multistep and DEIS keep only the last `solver_order` converted model outputs,
    each computed from that step's own input latents (which the trajectory records), plus a
    warm-up counter that saturates at `solver_order` and the step index (set by begin index);
    they draw no noise. Replaying only those steps gives the same state bit for bit (tests check
    it at every step). Everything else is replayed from step 0: ancestral and DDPM samplers draw
    from the generator every step, UniPC's corrector folds every earlier sample into the next,
    SDE variants draw noise."""
    name = type(sched).__name__
    config = sched.config
    if name == "DPMSolverMultistepScheduler" and config.get("algorithm_type") in ("dpmsolver", "dpmsolver++"):
        return int(config.get("solver_order", 2))
    if name == "DEISMultistepScheduler":
        return int(config.get("solver_order", 2))
    return None


def _guided_output(step, device, dtype) -> torch.Tensor:
    """The output the sampler got at this step, recomputed on the run's device as the loop did."""
    cond = step.eps_cond.to(device, dtype)
    uncond = None if step.eps_uncond is None else step.eps_uncond.to(device, dtype)
    perturbed = None if step.eps_perturbed is None else step.eps_perturbed.to(device, dtype)
    return pag.guided(cond, uncond, step.guidance, perturbed, step.pag_scale or 0.0)


def _replan(family, sched, steps_in_sched: int, traj: Trajectory, at: int, parent_sched) -> int:
    """Set both schedules (once each) and return the new run's first position: the first-order
    position of `sched` whose noise level is nearest the parent's after step `at`."""
    p = traj.params
    family.set_timesteps(parent_sched, int(p["steps"]), p["height"], p["width"])
    i = _start_step(p) * int(getattr(parent_sched, "order", 1)) + _evals_through(traj, at)
    level = sigma_at(parent_sched, i) if i < len(parent_sched.timesteps) else 0.0
    family.set_timesteps(sched, steps_in_sched, p["height"], p["width"])
    return _start_index(sched, level)


def _start_index(sched, level: float) -> int:
    """The first-order position whose noise level is closest to `level` (in log sigma)."""
    order = int(getattr(sched, "order", 1))
    positions = range(0, len(sched.timesteps), order)
    def distance(i: int) -> float:
        return abs(math.log(max(sigma_at(sched, i), 1e-8)) - math.log(max(level, 1e-8)))
    return min(positions, key=distance)


def _enter_new_schedule(sched, start: int, traj: Trajectory, at: int, device) -> torch.Tensor:
    """Re-express the latents after `at` in the new sampler's form at position `start` (set by _replan)."""
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    step = traj.steps[at]
    x_vp = step.latents.to(device, torch.float32)[None] * step.xt_scale
    dtype = step.latents.dtype
    return (x_vp / input_scale(sched, start, x_vp)).to(dtype)


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
