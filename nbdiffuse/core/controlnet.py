"""ControlNet in nbdiffuse's own loop: its checks, its plan and its work at each step.

A ControlNet reads a control picture (an outline, edges, a pose) and, at each model evaluation,
adds residuals to the UNet's skip connections (SD3's and Flux's: to the transformer's blocks;
core/controlnet_sd3.py and core/controlnet_flux.py say what they do differently). nbdiffuse runs it as diffusers'
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

Several ControlNets at once (a MultiControlNetModel, diffusers' Multi-ControlNet): a picture, a scale
and a window per ControlNet (lists in their order; one value stands for all), their residuals summed
as MultiControlNetModel sums them; Step.control_scale records one scale per ControlNet and
Step.control_strength the strength of the sum. RunControl.set_control_scale sets every ControlNet's.

A run's params hold the settings under "control" (ControlPlan.params).
"""
from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from . import img2img
from .control_mode import check_control_mode, modes_of, nets_of, recorded_mode
from .controlnet_flux import FluxControl, is_flux_controlnet
from .controlnet_sd3 import SD3Control, is_sd3_controlnet
from .controlnet_unet import UNetControl, UnionControl, is_union_unet_controlnet
from .validate import CONTROL_SCALE_ALLOWED, check_control_scale, number_schedule, show_value


def controlnet_of(pipe: Any) -> Any:
    """The pipeline's ControlNet, or None."""
    return getattr(pipe, "controlnet", None)


def controlnet_name(net: Any) -> str:
    """Where a ControlNet came from: its folder or hub id, "outline" for the embedded model's."""
    from .pipe_attrs import source

    return str(source(net) or getattr(net, "config", {}).get("_name_or_path") or type(net).__name__)


def own_control_scale(pipe: Any) -> float:
    """The control scale pipe(...) runs at when given none: its controlnet_conditioning_scale default
    (1 for StableDiffusion(XL)ControlNetPipeline, 0.8 for their image-to-image pipelines), else 1."""
    parameter = inspect.signature(type(pipe).__call__).parameters.get("controlnet_conditioning_scale")
    default = getattr(parameter, "default", None)
    return float(default) if isinstance(default, numbers.Real) and not isinstance(default, bool) else 1.0


def control_scale_schedule(control_scale: Any, steps: int, name: str = "control_scale") -> list[float]:
    """A number, a sequence of one number per step that runs, or a callable step -> number."""
    return number_schedule(name, control_scale, steps, check_control_scale, CONTROL_SCALE_ALLOWED)


def per_net(name: str, value: Any, n: int) -> list[Any]:
    """A setting of a run of n ControlNets: one value for all of them, or (n > 1) a list or tuple of n, one
    per ControlNet in the MultiControlNetModel's order (diffusers' lists)."""
    if n > 1 and isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: this pipeline runs {n} ControlNets (MultiControlNetModel): give one value for "
                             f"all of them or a list of {n}, one per ControlNet; got a list of {len(value)}")
        return list(value)
    return [value] * n


def control_pictures(image: Any, n: int) -> list[Image.Image]:
    """control_image: one picture, or for a MultiControlNetModel of n nets a list or tuple of n, checked."""
    if n == 1:
        return [img2img.check_image(image, "control_image")]
    if not isinstance(image, (list, tuple)) or len(image) != n:
        got = f"a list of {len(image)}" if isinstance(image, (list, tuple)) else f"one picture ({type(image).__name__})"
        raise ValueError(f"control_image: this pipeline runs {n} ControlNets (MultiControlNetModel): pass a list of "
                         f"{n} pictures, one per ControlNet; got {got}")
    return [img2img.check_image(picture, f"control_image[{j}]") for j, picture in enumerate(image)]


def check_window(start: Any, end: Any, at: str = "") -> tuple[float, float]:
    """control_start and control_end: shares of the run, 0 <= start < end <= 1 (`at`: "[j]" of a net's)."""
    values = []
    for name, value in ((f"control_start{at}", start), (f"control_end{at}", end)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
                or not 0.0 <= float(value) <= 1.0:
            raise (TypeError if not isinstance(value, numbers.Real) or isinstance(value, bool) else ValueError)(
                f"{name} must be a number from 0 to 1 (a share of the run's steps), got {show_value(value)}")
        values.append(float(value))
    if values[0] >= values[1]:
        raise ValueError(f"control_start{at} must be below control_end{at} (the window where the ControlNet acts), "
                         f"got control_start{at}={values[0]:g}, control_end{at}={values[1]:g}")
    return values[0], values[1]


def check_windows(start: Any, end: Any, n: int) -> tuple[list[float], list[float]]:
    """Each ControlNet's window: per_net's values, each checked (diffusers repeats a single start or end)."""
    pairs = [check_window(s, e, f"[{j}]" if n > 1 else "")
             for j, (s, e) in enumerate(zip(per_net("control_start", start, n), per_net("control_end", end, n)))]
    return [a for a, _ in pairs], [b for _, b in pairs]


def check_controlnet_pipe(pipe: Any) -> Any:
    """The pipeline's ControlNet (a MultiControlNetModel too), or a ValueError saying what it lacks."""
    net = controlnet_of(pipe)
    if net is None:
        raise ValueError(f"control_image needs a ControlNet pipeline; {type(pipe).__name__} has none. Load one with "
                         "nbd.load_pipeline(source, controlnet=...) (a folder, a hub id, a ControlNetModel, or "
                         "\"outline\" for the embedded model; a list of them for several)")
    return net


# diffusers' SDXL PAG ControlNet pipelines run their ControlNet with guess_mode=False whatever is asked (the
# image-to-image one takes the keyword and drops it; global_pool_conditions is not read either)
GUESS_MODE_DROPPED = ("StableDiffusionXLControlNetPAGPipeline", "StableDiffusionXLControlNetPAGImg2ImgPipeline")


def drops_guess_mode(pipe: Any) -> bool:
    return any(cls.__name__ in GUESS_MODE_DROPPED for cls in type(pipe).__mro__)


def check_guess_mode(value: Any, net: Any = None, pipe: Any = None) -> bool:
    """control_guess_mode: True or False; a ControlNet whose config has global_pool_conditions always runs
    in guess mode (diffusers: guess_mode = guess_mode or global_pool_conditions, of the first net of several),
    except in a pipeline that drops guess mode (GUESS_MODE_DROPPED), where True is refused."""
    if not isinstance(value, bool):
        raise TypeError(f"control_guess_mode must be True or False, got {show_value(value)}")
    if pipe is not None and drops_guess_mode(pipe):
        if value:
            raise ValueError(f"control_guess_mode=True: {type(pipe).__name__} runs its ControlNet without guess "
                             "mode (diffusers passes guess_mode=False to it); leave it False")
        return False
    first = nets_of(net)[0] if net is not None else None
    if value and first is not None and not control_kind(net).guess_mode:
        raise ValueError(f"control_guess_mode=True: {type(first).__name__} has no guess mode (diffusers' guess_mode "
                         "is for SD's and SDXL's ControlNets); leave it False")
    return value or bool(getattr(getattr(first, "config", None), "global_pool_conditions", False))


@dataclass
class ControlPlan:
    """A run's checked control settings (no model work), one entry per ControlNet: the pictures, the scales of
    each step that runs, the windows. `multi`: a MultiControlNetModel's run (its params hold lists)."""
    images: list[Image.Image]
    scales: list[list[float]]  # per step that runs, one per ControlNet
    starts: list[float]
    ends: list[float]
    models: list[str]
    guess_mode: bool = False
    multi: bool = False
    modes: list[int | None] | None = None  # a union ControlNet's kind of picture (core/control_mode.py), per net

    @property
    def image(self) -> Any:
        """traj.control_image: the picture, or a Multi-ControlNet run's list of pictures."""
        return list(self.images) if self.multi else self.images[0]

    def recorded(self, scale: list[float]) -> Any:
        """A step's scales as Step.control_scale records them: a number, or one per ControlNet."""
        return list(scale) if self.multi else scale[0]

    def params(self) -> dict:
        """traj.params["control"]; "scale" becomes the scales used, then the plan (run.run_end). One ControlNet:
        numbers and one picture's fingerprint; several: "nets", and a list per key (scales: a list per step)."""
        pictures = [img2img.fingerprint(image) for image in self.images]
        mode = {"mode": recorded_mode(self.modes, self.multi)} if self.modes and any(
            m is not None for m in self.modes) else {}  # only a union ControlNet's run records one
        if not self.multi:
            scales = [row[0] for row in self.scales]
            return {"model": self.models[0], "image": pictures[0], "scale": scales, "scale_plan": list(scales),
                    "start": self.starts[0], "end": self.ends[0], "guess_mode": self.guess_mode, **mode}
        return {"nets": len(self.images), "model": list(self.models), "image": pictures,
                "scale": [list(row) for row in self.scales], "scale_plan": [list(row) for row in self.scales],
                "start": list(self.starts), "end": list(self.ends), "guess_mode": self.guess_mode, **mode}


def scales_used(control: dict, steps: list) -> list:
    """params["control"]["scale"] once a run ends: the scales its steps used (none: 0, a branch's parent steps
    made without control), then the plan for the steps never made."""
    zero = [0.0] * int(control["nets"]) if control.get("nets") else 0.0
    used = [zero if step.control_scale is None else step.control_scale for step in steps]
    return used + control["scale_plan"][len(steps):]


def plan_control(pipe: Any, image: Any, scale: Any, start: Any, end: Any, steps: int,
                 guess_mode: Any = False, mode: Any = None) -> ControlPlan | None:
    """Check a run's control arguments (trace, prepare) against `pipe`; None for a run without control.

    A ControlNet pipeline without control_image runs the plain model (as control_scale=0 would)."""
    if image is None:
        for name, value, default in (("control_scale", scale, 1.0), ("control_start", start, 0.0),
                                     ("control_end", end, 1.0), ("control_guess_mode", guess_mode, False),
                                     ("control_mode", mode, None)):
            if default is None:
                same = value is None
            elif default is False:
                same = value is False
            else:  # control_scale None: the pipeline's own default
                same = (value is None and name == "control_scale") or \
                    (isinstance(value, numbers.Real) and not isinstance(value, bool) and value == default)
            if not same:
                raise ValueError(f"{name}={show_value(value)} needs a control picture: pass control_image=...")
        return None
    scale = own_control_scale(pipe) if scale is None else scale
    net = check_controlnet_pipe(pipe)
    nets = nets_of(net)
    n = len(nets)
    images = control_pictures(image, n)
    starts, ends = check_windows(start, end, n)
    per = per_net("control_scale", scale, n) if n > 1 else [scale]
    schedules = [control_scale_schedule(v, steps, f"control_scale[{j}]" if n > 1 else "control_scale")
                 for j, v in enumerate(per)]
    return ControlPlan(images, [list(row) for row in zip(*schedules)], starts, ends,
                       [controlnet_name(one) for one in nets], check_guess_mode(guess_mode, net, pipe), n > 1,
                       check_control_mode(mode, nets))


def control_size(plan: ControlPlan | None, factor: int) -> tuple[int, int] | None:
    """A run's size from its control picture (diffusers' default; several: the first's), its sides rounded
    down to `factor`."""
    if plan is None:
        return None
    image = plan.images[0]
    return max(factor, image.height // factor * factor), max(factor, image.width // factor * factor)


class ControlStep:
    """A run's ControlNets at work: the pictures on the device, the scales of each step and their residuals."""

    def __init__(self, plan: ControlPlan, family: Any, height: int, width: int, live: Any = None, seed: int = 0):
        self.plan, self.family, self.live, self.seed = plan, family, live, seed
        self.net = controlnet_of(family.pipe)
        self.nets = nets_of(self.net)
        self.kind = control_kind(self.net)
        self.height, self.width = height, width
        self.pictures: dict[bool, list[torch.Tensor]] = {}
        self._repeated: dict[int, list[torch.Tensor]] = {}  # a PAG step's pictures, by its batch's rows
        self.first = 0  # the run's first position in scheduler.timesteps (image to image starts later)
        self.guidance: float | None = None  # the step's guidance (Flux's ControlNet may read it)
        self.split: int | None = None  # Flux's: how many of a ControlNet's residuals are its double blocks'

    def begin(self, generator: torch.Generator | None = None) -> None:
        """The control pictures as the pipeline makes them, once per run, for one batch row and for
        guidance's two (the caller holds the model). generator: the run's, before its start noise (Flux's
        ControlNet draws its pictures' latents from it); None: a branch (its parent's draws again)."""
        self.pictures = self.kind.pictures(self, generator)
        self._repeated = {}

    def _pictures(self, guided: bool, perturbed: bool, rows: int) -> list:
        """Each ControlNet's picture for the step's batch: a PAG step's repeats the one-row picture for its rows
        (made once per batch size, not at every evaluation)."""
        if not perturbed:
            return self.pictures[guided]
        if rows not in self._repeated:
            self._repeated[rows] = [torch.cat([picture] * rows) for picture in self.pictures[False]]
        return self._repeated[rows]

    def scale_at(self, k: int) -> list[float]:
        """The scales asked at step k, one per ControlNet: RunControl.set_control_scale's (one for every
        ControlNet, or one each), else the plan's."""
        live = self.live.control_scale if self.live is not None else None
        n = len(self.nets)
        if isinstance(live, tuple) and len(live) != n:
            raise ValueError(f"RunControl.set_control_scale: this run has {n} ControlNet(s); give one number for "
                             f"all or a list of {n}, got a list of {len(live)}")
        if live is not None:  # one for every ControlNet, or one each
            return list(live) if isinstance(live, tuple) else [live] * n
        scales = self.plan.scales
        return list(scales[k] if k < len(scales) else scales[-1])

    def keep(self, i: int, positions: int, j: int = 0) -> float:
        """1 inside ControlNet j's window at evaluation i of the `positions` the run makes, else 0 (diffusers' rule)."""
        i, n = i - self.first, positions - self.first
        return 1.0 - float(i / n < self.plan.starts[j] or (i + 1) / n > self.plan.ends[j])

    def residuals(self, x_in: torch.Tensor, t: Any, cond: Any, guided: bool, scale: list[float], i: int,
                  positions: int, guidance: float | None = None,
                  perturbed: bool = False) -> tuple[dict | None, torch.Tensor | None]:
        """(the denoiser's extra arguments, the strength as a 0-d tensor), or (None, None) where none acts. Several
        ControlNets' residuals are summed in their order, as MultiControlNetModel sums them; one whose scale
        times keep is 0 is not run (its residuals would be zeros). perturbed: a PAG step (core/pag.py), whose
        batch has the prompt's row again: the ControlNet reads every row, as diffusers' PAG ControlNet
        pipelines run it (guess mode then only scales its residuals)."""
        guess = self.plan.guess_mode
        self.guidance = guidance
        # guess mode: the prompt's row only, and none for the negative prompt's; Flux's: the prompt's row for all
        both = guided and (perturbed or not guess) and not self.kind.one_row
        rows = (2 if both else 1) + (1 if perturbed else 0)
        batch = torch.cat([x_in] * rows) if rows > 1 else x_in
        text = cond.rows(both, perturbed=perturbed)
        total: list[torch.Tensor] | None = None
        for j, (net, picture) in enumerate(zip(self.nets, self._pictures(guided, perturbed, rows))):
            cond_scale = scale[j] * self.keep(i, positions, j)
            if cond_scale == 0.0:
                continue
            made = self.kind.run(self, j, net, batch, t, text, picture, cond_scale, guess)
            total = made if total is None else [a + b for a, b in zip(total, made)]
        if total is None:
            return None, None
        if guided and not both and not self.kind.one_row:  # guess mode: zeros for the negative prompt's row
            total = [torch.cat([torch.zeros_like(r), r]) for r in total]
        row = -2 if perturbed else -1  # the prompt's row (diffusers batches uncond first, a PAG run's perturbed last)
        strength = torch.stack([r[row].float().pow(2).sum() for r in total]).sum().sqrt()
        return self.kind.extra(self, total), strength


def control_kind(net: Any) -> Any:
    """How a pipeline's ControlNet runs in the loop: SD3's (core/controlnet_sd3.py), Flux's
    (core/controlnet_flux.py), SDXL's union one (core/controlnet_unet.py), else SD's and SDXL's."""
    first = nets_of(net)[0]
    if is_sd3_controlnet(first):
        return SD3Control
    if is_flux_controlnet(first):
        return FluxControl
    return UnionControl if is_union_unet_controlnet(first) else UNetControl


BRANCH_CHANGES = ("control_image", "control_scale", "control_start", "control_end", "control_guess_mode",
                  "control_mode")


def branch_plan(pipe: Any, traj: Any, at: int, total: int, changes: dict) -> ControlPlan | None:
    """The control of a branch of `traj` after step `at` (core/branch.py): the parent's pictures, windows
    and scales, each changed where `changes` says; a new control_image adds control to a run without.
    A control_scale change is a number, a callable, one value per step of the new run, or one per
    step after `at` (several ControlNets: one of those for all, or a list of one per ControlNet); the
    steps up to `at` keep the scales they ran with."""
    parent = traj.params.get("control")
    asked = {key: changes[key] for key in BRANCH_CHANGES if key in changes}
    if parent is None and "control_image" not in asked:
        if asked:
            raise ValueError(f"{', '.join(asked)} needs a control picture: the run had none; pass control_image=...")
        return None
    net = check_controlnet_pipe(pipe)
    nets = nets_of(net)
    n = len(nets)
    had = int(parent.get("nets") or 1) if parent else n
    if had != n:
        raise ValueError(f"this run was made with {had} ControlNet(s) and {type(pipe).__name__} runs {n}: branch it "
                         "with a pipeline of the same ControlNets")
    image = asked.get("control_image", traj.control_image)
    if image is None:
        raise ValueError("this run's control picture was not kept with it: pass control_image=... to branch it")
    images = control_pictures(image, n)
    starts, ends = check_windows(asked.get("control_start", parent["start"] if parent else 0.0),
                                 asked.get("control_end", parent["end"] if parent else 1.0), n)
    guess = check_guess_mode(asked.get("control_guess_mode", bool(parent.get("guess_mode")) if parent else False), net)
    recorded = modes_of(parent, n) if parent else [None] * n  # a union ControlNet's kinds of picture
    modes = check_control_mode(asked.get("control_mode", recorded if n > 1 else recorded[0]), nets)
    rows = [_row(step.control_scale, n) for step in traj.steps[: at + 1]]
    if "control_scale" in asked:
        per = per_net("control_scale", asked["control_scale"], n) if n > 1 else [asked["control_scale"]]
        rests = []
        for j, scale in enumerate(per):
            if not callable(scale) and hasattr(scale, "__len__") and not isinstance(scale, (str, bytes)) \
                    and len(scale) == total - at - 1:
                scale = [0.0] * (at + 1) + list(scale)  # a schedule for the remaining steps only
            rests.append(control_scale_schedule(scale, total, f"control_scale[{j}]" if n > 1 else "control_scale")[at + 1:])
        rows += [list(row) for row in zip(*rests)]
    else:
        used = parent["scale"] if parent else [1.0]
        rows += [_row(used[k] if k < len(used) else used[-1], n) for k in range(at + 1, total)]
    return ControlPlan(images, rows, starts, ends, [controlnet_name(one) for one in nets], guess, n > 1, modes)


def control_args_of(traj: Any, lead: int = 0) -> dict[str, Any]:
    """trace's control arguments that make `traj`'s control again (its pictures, its scale at each step that
    ran, its windows, guess mode); {} for a run without control. lead: steps of the schedule before the run's
    first (a run prepared over the whole schedule, as decision.py's continuations are), given its first scale."""
    settings = traj.params.get("control")
    if not settings:
        return {}
    if traj.control_image is None:
        raise ValueError("this run's control picture was not kept with it (a file saved before pictures were)")
    n = int(settings.get("nets") or 1)
    rows = [_row(value, n) for value in settings["scale"]]
    rows = rows[:1] * lead + rows
    scale = [list(column) for column in zip(*rows)] if n > 1 else [row[0] for row in rows]
    mode = {"control_mode": settings["mode"]} if settings.get("mode") is not None else {}
    return {"control_image": traj.control_image, "control_scale": scale, "control_start": settings["start"],
            "control_end": settings["end"], "control_guess_mode": bool(settings.get("guess_mode")), **mode}


def _row(scale: Any, n: int) -> list[float]:
    """A recorded step's scales (Step.control_scale, a params["control"]["scale"] entry) as one per ControlNet."""
    if scale is None:
        return [0.0] * n
    return [float(v) for v in scale] if isinstance(scale, (list, tuple)) else [float(scale)] * n
