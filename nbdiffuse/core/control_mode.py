"""control_mode: which kind of picture each union ControlNet reads.

A union ControlNet is one model trained on several kinds of control picture (edges, depth, pose, tile, ...):
diffusers' ControlNetUnionModel (SDXL, `num_control_type` kinds) and a FluxControlNetModel built with `num_mode`
(`union`). Each run tells it which kind its picture is, by number: `control_mode`, diffusers' name. What each
number means is the model's own (its card lists them: xinsir's SDXL union reads 0 as pose and 3 as canny
edges, InstantX's Flux union 0 as canny and 2 as depth), so nbdiffuse checks only the range.

control_mode is one number for a run of one ControlNet, or one per ControlNet (None for one that is not a
union ControlNet) for several; a ControlNet that is not a union one takes None. Here: the checks, and
`nets_of` (the ControlNets a pipeline's `controlnet` runs), which the ControlNet modules share.
"""
from __future__ import annotations

import numbers
from typing import Any

from .validate import show_value


def nets_of(net: Any) -> list[Any]:
    """The ControlNets a pipeline's `controlnet` runs: a MultiControlNetModel's nets (Flux's and SD3's too),
    else the one."""
    return list(net.nets) if "Multi" in type(net).__name__ and hasattr(net, "nets") else [net]


def union_types(net: Any) -> int | None:
    """How many kinds of picture a union ControlNet reads; None for a ControlNet of one kind."""
    config = getattr(net, "config", None)
    if config is None:
        return None
    if type(net).__name__.startswith("ControlNetUnion") or "num_control_type" in config:
        return int(config.get("num_control_type") or 0) or None
    if getattr(net, "union", False):
        return int(config.get("num_mode") or 0) or None
    return None


def check_control_mode(mode: Any, nets: list[Any]) -> list[int | None]:
    """control_mode as one entry per ControlNet: a number from 0 to its kinds - 1 for a union ControlNet, None
    for another. Several ControlNets take one value for all or a list of one each."""
    n = len(nets)
    if n > 1 and isinstance(mode, (list, tuple)):
        if len(mode) != n:
            raise ValueError(f"control_mode: this pipeline runs {n} ControlNets: give one value for all of them or a "
                             f"list of {n}, one per ControlNet; got a list of {len(mode)}")
        values = list(mode)
    else:
        values = [mode] * n
    return [_one(value, net, f"control_mode[{j}]" if n > 1 else "control_mode") for j, (value, net) in
            enumerate(zip(values, nets))]


def _one(value: Any, net: Any, name: str) -> int | None:
    kinds = union_types(net)
    if kinds is None:
        if value is not None:
            raise ValueError(f"{name}={show_value(value)}: {type(net).__name__} is not a union ControlNet (it reads one "
                             "kind of picture); leave control_mode None")
        return None
    allowed = f"a number from 0 to {kinds - 1} (which of its {kinds} kinds of picture the control picture is; the " \
              "model's card lists them)"
    if value is None:
        raise ValueError(f"{name}: {type(net).__name__} is a union ControlNet: say which kind of picture the control "
                         f"picture is, {allowed}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {show_value(value)}")
    if not 0 <= int(value) < kinds:
        raise ValueError(f"{name} must be {allowed}, got {int(value)}")
    return int(value)


def recorded_mode(modes: list[int | None], multi: bool) -> Any:
    """params["control"]["mode"]: the number (one ControlNet) or the list (several)."""
    return list(modes) if multi else modes[0]


def modes_of(settings: dict, n: int) -> list[int | None]:
    """The modes a run's params["control"] recorded (none recorded: no union ControlNet), one per ControlNet."""
    mode = settings.get("mode")
    if isinstance(mode, list):
        return list(mode)
    return [mode] * n
