"""A sweep's plan: its axes checked and turned into one call per cell, row-major (the last axis fastest).

An axis is any keyword of `trace` (guidance, steps, scheduler, seed, negative_prompt, height, width,
strength, image, and whatever keywords trace gains, such as a ControlNet's control_scale) or one
of these:
- `lora_scale`: the LoRA weight (nbd.set_lora_scale) before the cell's run;
- `pag_scale`, `pag_adaptive_scale`: a PAG pipeline's perturbed-attention guidance (core/pag.py), passed to the
  run as its pipe_kwargs;
- `prompt`: a list of prompts;
- `prompt_sr`: [search, replacement, ...], the web UIs' "Prompt S/R": the first cell keeps the
  prompt, each next one replaces every `search` in it (and in the negative prompt) by the replacement;
- `seed_walk=(a, b, n)` and `prompt_walk=(p, q, n)`: n points from one end to the other (core/walks.py).
A cell's call is a plain dict (it travels to other processes): trace's keywords, plus "walk", "lora_scale",
"pag_scale" and "pag_adaptive_scale" when set.
"""
from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from typing import Any

from .run_args import check_run_args
from .validate import check_prompt, show_value
from .walks import prompt_end, seed_end, walk_points

NOT_AXES = ("pipe", "control", "on_step")  # trace's keywords a sweep sets itself
EXTRA_KEYS = ("lora_scale", "pag_scale", "pag_adaptive_scale")  # the LoRA's weight; PAG's, into pipe_kwargs
SPECIAL_AXES = ("prompt_sr", "seed_walk", "prompt_walk")
LOAD_KEYS = ("device", "dtype", "lora", "controlnet", "pag")  # how each worker loads the model (fixed only)
MAX_CELLS = 10_000


def trace_keywords() -> list[str]:
    """trace's keywords that a sweep may vary or fix, read from its signature (new ones join by themselves)."""
    from .trace import trace

    return [n for n in inspect.signature(trace).parameters if n not in NOT_AXES]


@dataclass(frozen=True)
class Axis:
    name: str
    labels: tuple[str, ...]  # what the grid shows for each value
    settings: tuple[dict, ...]  # what each value sets in a cell's call


@dataclass
class Cell:
    """One cell of a sweep: where it sits, what it ran, and what came of it."""

    index: tuple[int, ...]
    labels: dict[str, str]  # axis name -> this cell's value, as the grid shows it
    call: dict  # trace's keywords (plus "walk" / "lora_scale" when set)
    run: Any = None  # the Trajectory (a failed run's steps, if it made any), or None
    error: str | None = None  # "ErrorType: message" when the cell failed
    seconds: float | None = None  # the cell's time where it ran (its model load included)
    cpu_seconds: float | None = None  # the CPU time of the process that ran it, over the cell
    load_seconds: float | None = None  # when this cell's worker loaded the model for it
    worker: str | None = None  # "host:pid" of the worker that ran it (None in this process)

    @property
    def done(self) -> bool:
        return self.run is not None or self.error is not None


def allowed_axes() -> str:
    return ", ".join([*trace_keywords(), *EXTRA_KEYS, *SPECIAL_AXES])


def plan_axes(axes: Any, fixed: dict) -> list[Axis]:
    """Check `axes` against each other and the fixed keywords; one Axis per entry, in order."""
    if not isinstance(axes, dict) or not axes:
        raise TypeError(f"axes must be a non-empty dict {{name: values}}, got {show_value(axes)}; names: {allowed_axes()}")
    keywords = trace_keywords()
    for name in fixed:
        if name not in keywords and name not in EXTRA_KEYS and name not in LOAD_KEYS:
            allowed = ", ".join([*keywords, *EXTRA_KEYS, *LOAD_KEYS])
            raise TypeError(f"sweep() got an unknown keyword {name!r}; allowed: {allowed}")
    planned, sets = [], {}
    for name, values in axes.items():
        if not isinstance(name, str) or (name not in keywords and name not in EXTRA_KEYS and name not in SPECIAL_AXES):
            raise ValueError(f"axes: unknown axis {name!r}; allowed: {allowed_axes()}")
        axis = _axis(name, values, fixed)
        for key in {k for s in axis.settings for k in s}:
            if key in fixed and name != "prompt_sr":  # S/R rewrites the fixed prompt, as it is meant to
                raise ValueError(f"axes[{name!r}] sets {key!r}, which is also given as a fixed keyword: give it once")
            if key in sets:
                raise ValueError(f"axes[{name!r}] and axes[{sets[key]!r}] both set {key!r}: keep one of them")
            sets[key] = name
        planned.append(axis)
    return planned


def _axis(name: str, values: Any, fixed: dict) -> Axis:
    if name == "seed_walk":
        a, b, ts = walk_points(name, values, seed_end)
        return Axis(name, tuple(f"{a}->{b} t={t:.2f}" for t in ts),
                    tuple({"seed": a if t <= 0.5 else b, "walk": {"seeds": (a, b, t)}} for t in ts))
    if name == "prompt_walk":
        p, q, ts = walk_points(name, values, prompt_end)
        return Axis(name, tuple(f"t={t:.2f}" for t in ts),
                    tuple({"prompt": p if t <= 0.5 else q, "walk": {"prompts": (p, q, t)}} for t in ts))
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"axes[{name!r}] must be a non-empty list of values, got {show_value(values)}")
    if name == "prompt_sr":
        return _search_replace(values, fixed)
    return Axis(name, tuple(_label(v) for v in values), tuple({name: v} for v in values))


def _search_replace(values: Any, fixed: dict) -> Axis:
    words = [check_prompt(v, f"axes['prompt_sr'][{k}]") for k, v in enumerate(values)]
    prompt = fixed.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError("axes['prompt_sr'] replaces words in the prompt: give prompt= as one string")
    if not words[0] or words[0] not in prompt:
        raise ValueError(f"axes['prompt_sr'][0] (the search term) {words[0]!r} is not in prompt {prompt!r}; "
                         "allowed: [search, replacement, ...] with search a part of the prompt")
    negative = fixed.get("negative_prompt")
    settings = []
    for word in words:
        setting = {"prompt": prompt.replace(words[0], word)}
        if isinstance(negative, str) and words[0] in negative:
            setting["negative_prompt"] = negative.replace(words[0], word)
        settings.append(setting)
    return Axis("prompt_sr", tuple(words), tuple(settings))


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def cell_calls(planned: list[Axis], fixed: dict) -> list[tuple[tuple[int, ...], dict]]:
    """(index, call) of every cell, row-major; each call checked as trace checks a run's shared
    arguments (prompts, steps, seed) before any model work."""
    total = 1
    for axis in planned:
        total *= len(axis.labels)
    if total > MAX_CELLS:
        raise ValueError(f"axes make {total} cells; a sweep takes at most {MAX_CELLS}")
    run_fixed = {k: v for k, v in fixed.items() if k not in LOAD_KEYS}
    out = []
    for index in itertools.product(*(range(len(a.labels)) for a in planned)):
        call = dict(run_fixed)
        walk: dict = {}
        for axis, i in zip(planned, index):
            setting = dict(axis.settings[i])
            walk.update(setting.pop("walk", {}))
            call.update(setting)
        if walk:
            call["walk"] = walk
        if "prompt" not in call:
            raise ValueError("sweep needs a prompt: give prompt=..., or a prompt, prompt_sr or prompt_walk axis")
        check_run_args(call["prompt"], call.get("negative_prompt", ""), call.get("steps", 30), call.get("seed", 0),
                       None, None)
        out.append((index, call))
    return out
