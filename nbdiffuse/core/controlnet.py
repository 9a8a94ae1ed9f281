"""ControlNet in nbdiffuse's own loop: its checks, its plan and its work at each step.

A ControlNet reads a control picture (an outline, edges, a pose) and, at each model evaluation,
adds residuals to the UNet's skip connections. nbdiffuse runs it as diffusers'
StableDiffusionControlNetPipeline / StableDiffusionXLControlNetPipeline do, bit for bit: the
picture goes through the pipeline's control_image_processor, the ControlNet sees the same batch,
text and timestep as the UNet, and its residuals are scaled by control_scale at the evaluations
inside the [control_start, control_end] window (diffusers' controlnet_keep: evaluation i of n acts
when i/n >= start and (i+1)/n <= end) and by 0 outside. Where that product is 0 the ControlNet
is not run at all: adding zero residuals leaves the UNet's output as it was, so a run at
control_scale=0 is the plain model's run, bit for bit, at the plain model's cost.

Each step records the scale asked (Step.control_scale, like guidance: a number, one per step, a
callable, or RunControl.set_control_scale live) and the control's strength (Step.control_strength:
the L2 norm of the residuals added to the prompt's batch row, 0 where the ControlNet did not act).
Guess mode (control_guess_mode=True, diffusers' guess_mode; forced on for a ControlNet whose config has
global_pool_conditions, as diffusers does): the ControlNet reads the prompt's batch row only, its residuals
are scaled from 0.1 at the first down block to 1 at the middle one (logarithmically), and the negative
prompt's row gets none; it is meant to follow the picture even with an empty prompt.

A run's params hold the settings under "control" (ControlPlan.params). Multi-ControlNet comes later.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from . import img2img
from .validate import CONTROL_SCALE_ALLOWED, check_control_scale, number_schedule, show_value


def controlnet_of(pipe: Any) -> Any:
    """The pipeline's ControlNet, or None."""
    return getattr(pipe, "controlnet", None)


def controlnet_name(net: Any) -> str:
    """Where a ControlNet came from: its folder or hub id, "outline" for the embedded model's."""
    from .pipe_attrs import source

    return str(source(net) or getattr(net, "config", {}).get("_name_or_path") or type(net).__name__)


def control_scale_schedule(control_scale: Any, steps: int) -> list[float]:
    """A number, a sequence of one number per step that runs, or a callable step -> number."""
    return number_schedule("control_scale", control_scale, steps, check_control_scale, CONTROL_SCALE_ALLOWED)


def check_window(start: Any, end: Any) -> tuple[float, float]:
    """control_start and control_end: shares of the run, 0 <= start < end <= 1."""
    values = []
    for name, value in (("control_start", start), ("control_end", end)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
                or not 0.0 <= float(value) <= 1.0:
            raise (TypeError if not isinstance(value, numbers.Real) or isinstance(value, bool) else ValueError)(
                f"{name} must be a number from 0 to 1 (a share of the run's steps), got {show_value(value)}")
        values.append(float(value))
    if values[0] >= values[1]:
        raise ValueError(f"control_start must be below control_end (the window where the ControlNet acts), "
                         f"got control_start={values[0]:g}, control_end={values[1]:g}")
    return values[0], values[1]


def check_controlnet_pipe(pipe: Any) -> Any:
    """The pipeline's one ControlNet, or a ValueError saying what it lacks."""
    net = controlnet_of(pipe)
    if net is None:
        raise ValueError(f"control_image needs a ControlNet pipeline; {type(pipe).__name__} has none. Load one with "
                         "nbd.load_pipeline(source, controlnet=...) (a folder, a hub id, a ControlNetModel, or "
                         "\"outline\" for the embedded model)")
    if type(net).__name__ == "MultiControlNetModel":
        raise ValueError("several ControlNets at once (MultiControlNetModel) come later: load one ControlNet")
    return net


def check_guess_mode(value: Any, net: Any = None) -> bool:
    """control_guess_mode: True or False; a ControlNet whose config has global_pool_conditions always runs
    in guess mode (diffusers: guess_mode = guess_mode or global_pool_conditions)."""
    if not isinstance(value, bool):
        raise TypeError(f"control_guess_mode must be True or False, got {show_value(value)}")
    return value or bool(getattr(getattr(net, "config", None), "global_pool_conditions", False))


@dataclass
class ControlPlan:
    """A run's checked control settings (no model work): the picture, one scale per step that runs, the window."""
    image: Image.Image
    scales: list[float]
    start: float = 0.0
    end: float = 1.0
    model: str = ""
    guess_mode: bool = False

    def params(self) -> dict:
        """traj.params["control"]; "scale" becomes the scales used, then the plan (run.run_end)."""
        return {"model": self.model, "image": img2img.fingerprint(self.image), "scale": list(self.scales),
                "scale_plan": list(self.scales), "start": self.start, "end": self.end, "guess_mode": self.guess_mode}


def plan_control(pipe: Any, image: Any, scale: Any, start: Any, end: Any, steps: int,
                 guess_mode: Any = False) -> ControlPlan | None:
    """Check a run's control arguments (trace, prepare) against `pipe`; None for a run without control.

    A ControlNet pipeline without control_image runs the plain model (as control_scale=0 would)."""
    if image is None:
        for name, value, default in (("control_scale", scale, 1.0), ("control_start", start, 0.0),
                                     ("control_end", end, 1.0), ("control_guess_mode", guess_mode, False)):
            same = value is False if default is False else \
                isinstance(value, numbers.Real) and not isinstance(value, bool) and value == default
            if not same:
                raise ValueError(f"{name}={show_value(value)} needs a control picture: pass control_image=...")
        return None
    net = check_controlnet_pipe(pipe)
    image = img2img.check_image(image, "control_image")
    start, end = check_window(start, end)
    return ControlPlan(image, control_scale_schedule(scale, steps), start, end, controlnet_name(net),
                       check_guess_mode(guess_mode, net))


def control_size(plan: ControlPlan | None, factor: int) -> tuple[int, int] | None:
    """A run's size from its control picture (diffusers' default): its sides rounded down to `factor`."""
    if plan is None:
        return None
    return max(factor, plan.image.height // factor * factor), max(factor, plan.image.width // factor * factor)


class ControlStep:
    """A run's ControlNet at work: the picture on the device, the scale of each step and its residuals."""

    def __init__(self, plan: ControlPlan, family: Any, height: int, width: int, live: Any = None):
        self.plan, self.family, self.live = plan, family, live
        self.net = controlnet_of(family.pipe)
        self.height, self.width = height, width
        self.pictures: dict[bool, torch.Tensor] = {}
        self.first = 0  # the run's first position in scheduler.timesteps (image to image starts later)

    def begin(self) -> None:
        """The control picture as the pipeline's own prepare_image makes it (the same values in the same
        memory layout, which the ControlNet's convolutions are sensitive to), once per run, for one
        batch row and for guidance's two (the caller holds the model)."""
        pipe, family = self.family.pipe, self.family
        # guess mode: one row for guided steps too (the ControlNet reads the prompt's row only)
        self.pictures = {guided: pipe.prepare_image(self.plan.image, self.width, self.height, 1, 1, family.device,
                                                    self.net.dtype, do_classifier_free_guidance=guided,
                                                    guess_mode=self.plan.guess_mode)
                         for guided in (False, True)}

    def scale_at(self, k: int) -> float:
        """The scale asked at step k: RunControl.set_control_scale's, else the plan's."""
        live = self.live.control_scale if self.live is not None else None
        if live is not None:
            return live
        scales = self.plan.scales
        return scales[k] if k < len(scales) else scales[-1]

    def keep(self, i: int, positions: int) -> float:
        """1 inside the window at evaluation i of the `positions` the run makes, else 0 (diffusers' rule)."""
        i, n = i - self.first, positions - self.first
        return 1.0 - float(i / n < self.plan.start or (i + 1) / n > self.plan.end)

    def residuals(self, x_in: torch.Tensor, t: Any, cond: Any, guided: bool, scale: float, i: int,
                  positions: int) -> tuple[dict | None, torch.Tensor | None]:
        """(the UNet's extra arguments, the strength as a 0-d tensor), or (None, None) where it does not act."""
        cond_scale = scale * self.keep(i, positions)
        if cond_scale == 0.0:
            return None, None
        guess = self.plan.guess_mode
        both = guided and not guess  # guess mode: the prompt's row only, and none for the negative prompt's
        batch = torch.cat([x_in, x_in]) if both else x_in
        kwargs = self.family._unet_kwargs(cond.both if both else cond.cond)
        down, mid = self.net(batch, t, controlnet_cond=self.pictures[guided], conditioning_scale=cond_scale,
                             guess_mode=guess, return_dict=False, **kwargs)
        if guided and guess:  # zeros for the negative prompt's row, as diffusers adds them
            down = [torch.cat([torch.zeros_like(d), d]) for d in down]
            mid = torch.cat([torch.zeros_like(mid), mid])
        row = -1  # the prompt's row (the last one when guided: diffusers batches uncond first)
        strength = torch.stack([r[row].float().pow(2).sum() for r in (*down, mid)]).sum().sqrt()
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}, strength


BRANCH_CHANGES = ("control_image", "control_scale", "control_start", "control_end", "control_guess_mode")


def branch_plan(pipe: Any, traj: Any, at: int, total: int, changes: dict) -> ControlPlan | None:
    """The control of a branch of `traj` after step `at` (core/branch.py): the parent's picture, window
    and scales, each changed where `changes` says; a new control_image adds control to a run without.
    A control_scale change is a number, a callable, one value per step of the new run, or one per
    step after `at`; the steps up to `at` keep the scales they ran with."""
    parent = traj.params.get("control")
    asked = {key: changes[key] for key in BRANCH_CHANGES if key in changes}
    if parent is None and "control_image" not in asked:
        if asked:
            raise ValueError(f"{', '.join(asked)} needs a control picture: the run had none; pass control_image=...")
        return None
    image = asked.get("control_image", traj.control_image)
    if image is None:
        raise ValueError("this run's control picture was not kept with it: pass control_image=... to branch it")
    net = check_controlnet_pipe(pipe)
    image = img2img.check_image(image, "control_image")
    start, end = check_window(asked.get("control_start", parent["start"] if parent else 0.0),
                              asked.get("control_end", parent["end"] if parent else 1.0))
    guess = check_guess_mode(asked.get("control_guess_mode", bool(parent.get("guess_mode")) if parent else False), net)
    done = [step.control_scale or 0.0 for step in traj.steps[: at + 1]]
    if "control_scale" in asked:
        scale = asked["control_scale"]
        if not callable(scale) and hasattr(scale, "__len__") and not isinstance(scale, (str, bytes)) \
                and len(scale) == total - at - 1:
            scale = [0.0] * (at + 1) + list(scale)  # a schedule for the remaining steps only
        rest = control_scale_schedule(scale, total)[at + 1:]
    else:
        used = parent["scale"] if parent else [1.0]
        rest = [used[k] if k < len(used) else used[-1] for k in range(at + 1, total)]
    return ControlPlan(image, done + rest, start, end, controlnet_name(net), guess)
