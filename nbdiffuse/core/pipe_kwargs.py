"""pipe_kwargs: a pipeline's own keywords, beyond what trace() asks for everywhere.

On the generic path (core/generic.py) nbdiffuse calls pipe(...) itself, so any keyword its __call__
takes passes through (use_resolution_binning, text_encoder_out_layers, ...), except the ones trace()
sets from its own arguments. The families run nbdiffuse's own loop: it honours a keyword only where it
already does what pipe(...) does with that value (a family's `honoured_pipe_kwargs`), and refuses
every other one by name, before any model work.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

# What trace() sets on pipe(...) from its own arguments: never through pipe_kwargs.
SET_BY_TRACE = {"prompt": "prompt", "negative_prompt": "negative_prompt", "num_inference_steps": "steps",
                "guidance_scale": "guidance", "generator": "seed", "height": "height", "width": "width",
                "output_type": None, "return_dict": None, "callback_on_step_end": "on_step",
                "callback_on_step_end_tensor_inputs": None, "num_images_per_prompt": None, "image": "image",
                "strength": "strength", "latents": None, "mask_image": "mask_image"}


def check_pipe_kwargs(pipe_kwargs: Any) -> dict[str, Any]:
    """None or a dict with str keys; a keyword trace() sets itself is refused, naming the argument to use."""
    if pipe_kwargs is None:
        return {}
    if not isinstance(pipe_kwargs, dict) or not all(isinstance(k, str) for k in pipe_kwargs):
        raise TypeError(f"pipe_kwargs must be None or a dict of keyword -> value, got {type(pipe_kwargs).__name__}")
    for key in pipe_kwargs:
        if key in SET_BY_TRACE:
            use = SET_BY_TRACE[key]
            raise ValueError(f"pipe_kwargs[{key!r}]: nbdiffuse sets {key} itself"
                             + (f"; pass trace's {use}=... instead" if use else "; it cannot be changed"))
    return dict(pipe_kwargs)


def check_for_generic(pipe: Any, parameters: dict[str, inspect.Parameter], pipe_kwargs: dict) -> dict:
    """The keywords the generic path passes to pipe(...): each one its __call__ takes."""
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in pipe_kwargs:
        if key not in parameters and not takes_any:
            takes = sorted(k for k in parameters if k != "self" and k not in SET_BY_TRACE)
            raise ValueError(f"pipe_kwargs[{key!r}]: {type(pipe).__name__}.__call__ takes no {key}; it takes "
                             f"{', '.join(takes)}")
    return dict(pipe_kwargs)


def check_for_family(pipe: Any, family: Any, pipe_kwargs: dict) -> None:
    """A family's loop honours only keywords whose value it already runs as pipe(...) would; others are refused."""
    honoured = getattr(family, "honoured_pipe_kwargs", {})
    for key, value in pipe_kwargs.items():
        if key in honoured and _same(value, honoured[key]):
            continue
        known = ", ".join(f"{k}={v!r}" for k, v in honoured.items()) or "none"
        raise ValueError(f"pipe_kwargs[{key!r}]={value!r}: {type(pipe).__name__} runs nbdiffuse's own loop, which "
                         f"does not honour it (it honours: {known}); other pipelines' keywords pass through on the "
                         "generic path")


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, (int, float)) and isinstance(value, (int, float)):
        return math.isclose(value, expected, rel_tol=0, abs_tol=0)
    return value == expected


def recorded(pipe_kwargs: dict) -> dict[str, Any]:
    """pipe_kwargs as a run's params keep them: plain values as they are, anything else as its type."""
    def plain(value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)):
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, (list, tuple)) and len(value) <= 64:
            return [plain(v) for v in value]
        return f"<{type(value).__name__}>"

    return {k: plain(v) for k, v in pipe_kwargs.items()}
