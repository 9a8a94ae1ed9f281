"""Argument checks shared by the public API.

Every check raises before any model work, with a message that names the parameter,
the value it got and what is allowed, so a notebook user can fix the call at once.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Set
from typing import Any, Callable, Sequence

MAX_STEPS = 1000
MAX_SIDE = 4096  # pixels; beyond this even an H100 runs out of memory on SD-sized UNets
MAX_SEED = 2**63 - 1
# Classifier-free guidance scales people use run from 1 to ~30 (AUTOMATIC1111's slider stops at 30,
# ComfyUI's cfg input at 100). Far above, the guided noise prediction overflows: guidance 1e20 gave NaN
# latents and a black picture with no word said.
MAX_GUIDANCE = 100.0
MAX_CONTROL_SCALE = 10.0  # a ControlNet's scale; web UIs stop at 2, far above its residuals swamp the UNet's features
CONTROL_SCALE_ALLOWED = f"a number from 0 to {MAX_CONTROL_SCALE:g} (0: no control)"
MAX_PICTURE_SIDE = MAX_SIDE  # pixels: a picture asked of a run (traj.image(size=), exports)


def show_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int between {lo} and {hi}, got {show_value(value)} ({type(value).__name__})")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an int between {lo} and {hi}, got {value}")
    return value


def check_step_at(at: Any, n: int, of: str = "") -> int:
    """A branch point: a non-negative step index of a run with n steps (ValueError, as for other bad input)."""
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < n:
        raise ValueError(f"at must be a step index in 0..{n - 1}{of}, got {show_value(at)}")
    return at


def check_steps(steps: Any, name: str = "steps") -> int:
    return check_int(name, steps, 1, MAX_STEPS)


def check_seed(seed: Any) -> int:
    return check_int("seed", seed, 0, MAX_SEED)


def check_guidance_value(value: Any, name: str = "guidance") -> float:
    meaning = "1 means no classifier-free guidance"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number from 0 to {MAX_GUIDANCE:g} ({meaning}), got {show_value(value)} "
                        f"({type(value).__name__})")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number from 0 to {MAX_GUIDANCE:g}, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 ({meaning}), got {value}")
    if value > MAX_GUIDANCE:
        raise ValueError(f"{name} must be at most {MAX_GUIDANCE:g} (beyond, the guided prediction overflows "
                         f"to a black picture), got {value:g}")
    return value


def check_control_scale(value: Any, name: str = "control_scale") -> float:
    """A ControlNet's scale (core/controlnet.py)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {CONTROL_SCALE_ALLOWED}, got {show_value(value)} ({type(value).__name__})")
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= MAX_CONTROL_SCALE):
        raise ValueError(f"{name} must be {CONTROL_SCALE_ALLOWED}, got {value}")
    return value


def check_number(name: str, value: Any, lo: float, hi: float, unit: str = "") -> float:
    """A real number in [lo, hi] (finite: NaN and infinities are refused by the range)."""
    allowed = f"a number from {lo:g} to {hi:g}{unit}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed}, got {show_value(value)} ({type(value).__name__})")
    value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def guidance_schedule(guidance: Any, steps: int) -> list[float]:
    """A float, a sequence of `steps` floats, or a callable k -> float, as one float per step."""
    return number_schedule("guidance", guidance, steps, check_guidance_value, "a number >= 0")


def number_schedule(name: str, value: Any, steps: int, check: Callable[[Any, str], float],
                    allowed: str) -> list[float]:
    """`value` as one checked number per step: a number, a sequence of `steps` numbers or a callable
    step -> number (guidance, a ControlNet's scale). check(v, name) checks one value; `allowed` says
    what one value may be, for the message."""
    if callable(value):
        values = []
        for k in range(steps):
            try:
                got = value(k)
            except Exception as exc:  # the user's function failed: say where
                raise ValueError(f"{name}({k}) raised {type(exc).__name__}: {exc}") from exc
            values.append(check(got, f"{name}({k})"))
        return values
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [check(value, name)] * steps
    if isinstance(value, (str, bytes, bool, Mapping, Set)) or not hasattr(value, "__len__"):
        # a dict or set has a length, but no order of steps: list() of a dict is its keys
        raise TypeError(
            f"{name} must be {allowed}, a sequence of {steps} numbers or a callable step -> number, "
            f"got {show_value(value)} ({type(value).__name__})"
        )
    values = list(value)
    if len(values) != steps:
        raise ValueError(f"{name} schedule must have one value per step ({steps}), got {len(values)} values")
    return [check(v, f"{name}[{k}]") for k, v in enumerate(values)]


def check_prompt(value: Any, name: str = "prompt", allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        allowed = "a string or None" if allow_none else "a string"
        raise TypeError(f"{name} must be {allowed}, got {show_value(value)} ({type(value).__name__})")

    return check_encodable(value, name)  # no lone surrogate: tokenizers raise a TypeError on it


def check_size(name: str, value: Any, multiple: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, a multiple of {multiple}, got {show_value(value)} "
                        f"({type(value).__name__})")
    value = int(value)
    if value <= 0 or value % multiple:
        raise ValueError(f"{name} must be a positive multiple of {multiple} (the VAE's downsampling factor), got {value}")
    if value > MAX_SIDE:
        raise ValueError(f"{name} must be at most {MAX_SIDE} pixels, got {value}")
    return value


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {show_value(value)}")
    return value


def check_callable(name: str, value: Any) -> Callable | None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {show_value(value)} ({type(value).__name__})")
    return value


def check_encodable(value: str, name: str) -> str:
    """`value` when it can be written as UTF-8 (what every tokenizer reads), else a ValueError naming `name`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} must be text that can be written as UTF-8; got {show_value(value)}, which holds "
                         f"{value[exc.start:exc.end]!r} at position {exc.start} (a lone surrogate: fix the "
                         "text's decoding, or drop it)") from None
    return value
