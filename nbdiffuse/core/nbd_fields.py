"""The field checks of a .nbd file's header (core/nbd_schema.py): each names the field, the value and what
the format allows there (FieldError), so a hostile or damaged file is refused before anything is built."""
from __future__ import annotations

import math
import numbers
from typing import Any

from .validate import show_value


class FieldError(ValueError):
    """One field of a trajectory file that is not what the format allows."""

    def __init__(self, field: str, value: Any, allowed: str):
        super().__init__(f"field {field} must be {allowed}, got {show_value(value)}")


def finite_json(field: str, value: Any, depth: int = 0, infinite: bool = False) -> None:
    """Every number finite (JSON lets NaN and Infinity through; infinite=True lets +-inf by), nesting bounded."""
    if depth > 8:
        raise FieldError(field, value, "nested at most 8 deep")
    if isinstance(value, float) and not math.isfinite(value) and not (infinite and math.isinf(value)):
        raise FieldError(field, value, "a number, +-inf or finite" if infinite else "a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            finite_json(f"{field}.{key}", item, depth + 1, infinite)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            finite_json(f"{field}[{k}]", item, depth + 1, infinite)


def as_dict(field: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise FieldError(field, value, "an object (a JSON dict)")
    return value


def as_list(field: str, value: Any, most: int, at_least: int = 0) -> list:
    if not isinstance(value, list) or not at_least <= len(value) <= most:
        raise FieldError(field, value if not isinstance(value, list) else f"a list of {len(value)}",
                         f"a list of {at_least} to {most} entries")
    return value


def as_int(field: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FieldError(field, value, f"an integer from {lo} to {hi}")
    return value


def as_number(field: str, value: Any, lo: float, hi: float, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise FieldError(field, value, f"{allowed} from {lo:g} to {hi:g}")
    return float(value)


def as_text(field: str, value: Any, none: bool = False, limit: int | None = None) -> None:
    if value is None and none:
        return
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        raise FieldError(field, value, "text" + (f" of at most {limit} characters" if limit else "")
                         + (" (or null)" if none else ""))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(field, value, "text that can be written as UTF-8 (no lone surrogate)") from None
