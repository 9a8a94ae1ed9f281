"""trace(control_image=...) on the generic path: a ControlNet pipeline outside the families, given its picture.

Families run the ControlNet in nbdiffuse's own loop (core/controlnet.py: SD's, SDXL's, SD3's and Flux's). Every
other pipeline that takes a control picture (the ControlNet-XS ones, Sana's, QwenImage's,
CogView4ControlPipeline, FluxControlPipeline, ...) runs its own loop on the generic path (core/generic.py),
so trace hands it the picture and the settings under the names its __call__ takes: the picture as
`control_image` (or `image`, where that is the control picture of a pipeline without a start picture),
control_scale as `controlnet_conditioning_scale` (None: the pipeline's own default, recorded as such),
control_start and control_end as `control_guidance_start` / `control_guidance_end`, control_guess_mode
as `guess_mode`. Several ControlNets (a pipeline whose controlnet has `nets`) take a list per setting, as on
the families' path. The families run every union ControlNet pipeline (control_mode, core/control_mode.py) that
needs no mask; another one's pictures and kinds go through pipe_kwargs.

The pipeline reads them once, so a scale is one number (per ControlNet): a per-step schedule, a callable
or RunControl.set_control_scale cannot reach it, and a setting the pipeline does not take is refused unless
it is the default. The run records the settings as a family's run does (params["control"], each step's
scale, the pictures kept in .nbd files); the control's strength per step is not seen (Step.control_strength
None): the pipeline's loop does not show its residuals.
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any

from .control_mode import check_control_mode, union_types
from .controlnet import (ControlPlan, check_guess_mode, check_windows, control_pictures, controlnet_name,
                         drops_guess_mode, nets_of, own_control_scale, per_net, plan_control)
from .validate import check_control_scale, show_value


def control_slots(pipe: Any) -> int:
    """How many control pictures `pipe` takes: one per ControlNet, 1 for a pipeline whose own model reads a
    control picture (CogView4ControlPipeline, FluxControlPipeline: its __call__ takes control_image), else 0."""
    net = getattr(pipe, "controlnet", None)
    if net is not None:
        return len(nets_of(net))
    try:
        parameters = inspect.signature(type(pipe).__call__).parameters
    except (TypeError, ValueError):
        return 0
    return int(control_parameter(pipe, parameters) is not None)


def own_loop_asked(pipe: Any, pipe_kwargs: dict) -> bool:
    """Several pictures for one union ControlNet (diffusers' lists, a kind each), given through
    pipe_kwargs={'control_image': [...], 'control_mode': [...]}: nbdiffuse's loop takes one picture per
    ControlNet, so the pipeline's own loop runs them (the generic path, x_t only)."""
    net = getattr(pipe, "controlnet", None)
    return net is not None and "control_image" in pipe_kwargs and any(union_types(one) for one in nets_of(net))


def takes_guess_mode(pipe: Any) -> bool:
    """Whether a run on `pipe` may ask for guess mode: it takes a control picture and its __call__ a guess_mode
    that it uses (SD's and SDXL's ControlNet pipelines; not SD3's or Flux's, nor SDXL's PAG ones)."""
    try:
        return control_slots(pipe) > 0 and "guess_mode" in inspect.signature(type(pipe).__call__).parameters \
            and not drops_guess_mode(pipe)
    except (TypeError, ValueError):
        return False


def control_parameter(pipe: Any, parameters: dict) -> str | None:
    """The name under which `pipe`'s __call__ takes a control picture, or None where it takes none."""
    if "control_image" in parameters:
        return "control_image"
    if "image" in parameters and "strength" not in parameters and "controlnet_conditioning_scale" in parameters:
        return "image"  # StableDiffusion(XL)ControlNet(PAG|XS)Pipeline: `image` is the control picture
    return None


def plan_generic_control(pipe: Any, parameters: dict, image: Any, scale: Any, start: Any, end: Any, steps: int,
                         guess_mode: Any, mode: Any = None) -> tuple[dict[str, Any], ControlPlan | None]:
    """(the pipe(...) keywords, the plan for the run's record) of a generic run's control arguments; ({}, None)
    for a run without a control picture (its other control arguments must then be their defaults)."""
    name = type(pipe).__name__
    if image is None:
        plan_control(pipe, None, scale, start, end, 1, guess_mode, mode)  # control settings need a picture
        return {}, None
    where = control_parameter(pipe, parameters)
    if where is None:
        raise ValueError(f"control_image: {name} takes no control picture (its __call__ has no control_image); a "
                         "ControlNet pipeline of SD 1.x/2.x, SDXL, SD3 or Flux runs it in nbdiffuse's own loop")
    net = getattr(pipe, "controlnet", None)
    nets = nets_of(net) if net is not None else []
    n = max(len(nets), 1)
    if any(union_types(one) for one in nets):  # the families run every union ControlNet pipeline that has no mask
        raise ValueError(f"control_image: {name} runs a union ControlNet in its own loop: pass its pictures and "
                         "their kinds through pipe_kwargs={'control_image': ..., 'control_mode': ...}")
    modes = check_control_mode(mode, nets) if nets else [check_no_mode(mode, name)]
    pictures = control_pictures(image, n)
    own = scale is None  # the pipeline's own default (ZImageControlNetPipeline's: 0.75)
    if own:
        scale = own_control_scale(pipe)
    per = per_net("control_scale", scale, n) if n > 1 else [scale]
    scales = [_one_number(value, f"control_scale[{j}]" if n > 1 else "control_scale", name)
              for j, value in enumerate(per)]
    starts, ends = check_windows(start, end, n)
    guess = check_guess_mode(guess_mode, net)
    asked = {"controlnet_conditioning_scale": (scales, [1.0] * n, "control_scale"),
             "control_guidance_start": (starts, [0.0] * n, "control_start"),
             "control_guidance_end": (ends, [1.0] * n, "control_end"),
             "guess_mode": ([guess], [False], "control_guess_mode")}
    kwargs: dict[str, Any] = {where: pictures if n > 1 else pictures[0]}
    for key, (values, default, argument) in asked.items():
        if key == "controlnet_conditioning_scale" and own:
            continue  # left to the pipeline: the plan records its default
        if key in parameters:
            kwargs[key] = values[0] if key == "guess_mode" or n == 1 else list(values)
        elif values != default:
            raise ValueError(f"{argument}={show_value(values if n > 1 else values[0])}: {name} takes no {key}; "
                             f"leave {argument} at its default")
    models = [controlnet_name(one) for one in nets] or [f"{name}'s own"]
    return kwargs, ControlPlan(pictures, [list(scales)] * steps, starts, ends, models, guess, n > 1, modes)


def check_no_mode(mode: Any, name: str) -> None:
    """control_mode of a pipeline whose own model reads the picture (no ControlNet): None only."""
    if mode is not None:
        raise ValueError(f"control_mode={show_value(mode)}: {name} has no union ControlNet; leave control_mode None")


def _one_number(value: Any, argument: str, name: str) -> float:
    if callable(value) or (not isinstance(value, numbers.Real) and hasattr(value, "__len__")
                           and not isinstance(value, (str, bytes))):
        raise ValueError(f"{argument} must be one number for {name}: it runs its own loop and reads "
                         f"controlnet_conditioning_scale once, so a per-step schedule or a callable cannot reach it "
                         f"(got {type(value).__name__}); a ControlNet pipeline of SD 1.x/2.x, SDXL, SD3 or Flux takes one")
    return check_control_scale(value, argument)
