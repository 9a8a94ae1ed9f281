"""A ControlNet run's part of a .nbd file (core/nbd_schema.py): params.control, one entry per ControlNet of a
Multi-ControlNet run, and the control pictures' tensors (control_image, control_image.1, ...)."""
from __future__ import annotations

import torch

from .nbd_fields import FieldError, as_dict, as_int, as_list, as_number, as_text
from .validate import MAX_SIDE, MAX_STEPS, check_control_scale, show_value

MAX_CONTROLNETS = 16  # ControlNets of one Multi-ControlNet run a file may record


def control_tensor(j: int) -> str:
    """The tensor that holds a ControlNet run's picture j: control_image, then control_image.1, ..."""
    return "control_image" if j == 0 else f"control_image.{j}"


def check_control(control: dict) -> None:
    """A ControlNet run's settings (core/controlnet.py, ControlPlan.params): numbers and one picture's
    fingerprint, or for several ControlNets ("nets") a list of them per key, a list of scales per step."""
    nets = control.get("nets")
    if nets is not None:
        as_int("params.control.nets", nets, 2, MAX_CONTROLNETS)

    def each(key: str) -> list:
        if nets is None:
            return [control.get(key)]
        return as_list(f"params.control.{key}", control.get(key), nets, at_least=nets)

    def at(key: str, j: int) -> str:
        return f"params.control.{key}" if nets is None else f"params.control.{key}[{j}]"

    for j, model in enumerate(each("model")):
        as_text(at("model", j), model, limit=1000)
    for j, image in enumerate(each("image")):
        image = as_dict(at("image", j), image)
        for key in ("width", "height"):
            as_int(f"{at('image', j)}.{key}", image.get(key), 1, MAX_SIDE)
    for key in ("scale", "scale_plan"):
        for k, value in enumerate(as_list(f"params.control.{key}", control.get(key), MAX_STEPS, at_least=1)):
            row = [value] if nets is None else as_list(f"params.control.{key}[{k}]", value, nets, at_least=nets)
            for j, one in enumerate(row):
                check_control_scale(one, f"field params.control.{key}[{k}]" + ("" if nets is None else f"[{j}]"))
    for j, (start, end) in enumerate(zip(each("start"), each("end"))):
        start = as_number(at("start", j), start, 0.0, 1.0, "a share of the run")
        end = as_number(at("end", j), end, 0.0, 1.0, "a share of the run")
        if start >= end:
            raise FieldError(at("start", j), start, f"below {at('end', j)} ({end:g})")
    if not isinstance(control.get("guess_mode", False), bool):  # files before guess mode have none: off
        raise FieldError("params.control.guess_mode", control.get("guess_mode"), "true or false")
    if "mode" in control:  # a union ControlNet's kind of picture (core/control_mode.py); others record none
        for j, mode in enumerate(each("mode")):
            if mode is not None:
                as_int(at("mode", j), mode, 0, 1023)


def check_control_image(name: str, tensor: torch.Tensor, params: dict) -> None:
    """A ControlNet run's control picture (one per ControlNet: control_image, control_image.1, ...):
    (height, width, 3) uint8, the size params.control records."""
    control = params.get("control")
    if control is None:
        raise FieldError(f"tensor {name}", "present", "absent: params.control (a ControlNet run's settings) "
                         "is not there")
    nets = int(control.get("nets") or 1)
    j = next((j for j in range(nets) if control_tensor(j) == name), None)
    if j is None:
        raise FieldError(f"tensor {show_value(name)}", "present", f"one of the run's {nets} control pictures: "
                         + ", ".join(control_tensor(j) for j in range(nets)))
    image = control["image"] if nets == 1 else control["image"][j]
    shape = (image["height"], image["width"], 3)
    if tensor.dtype != torch.uint8 or tuple(tensor.shape) != shape:
        where = "params.control.image" if nets == 1 else f"params.control.image[{j}]"
        raise FieldError(f"tensor {name}", f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                         f"a uint8 tensor of shape {shape} (the picture {where} records)")
