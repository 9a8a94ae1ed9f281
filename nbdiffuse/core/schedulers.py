"""Short sampler names (as the web UIs use them) mapped onto diffusers' schedulers."""
from __future__ import annotations

import copy
import inspect
from typing import Any

import diffusers

# name -> (diffusers class name, config overrides). PNDM is left out on purpose: its
# warm-up runs extra model evaluations, so a run of N steps would not have N steps. Built with from_config on the
# pipeline's own scheduler config, so betas, prediction type and spacing carry over.
_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    # Latents are not images in [-1, 1]: clipping x0 (these classes' default) would ruin them.
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                  "use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                         "use_karras_sigmas": True}),
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
}

# Flow-matching models (SD3, Flux) cannot use the DDPM-family samplers above.
_FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "heun": ("FlowMatchHeunDiscreteScheduler", {}),
}


def schedulers(pipe: Any = None) -> list[str]:
    """The sampler names trace() accepts (for `pipe`, when given: scheduler_choices, its own scheduler's
    class name first where no short name fits it)."""
    return list(_table_for(pipe)) if pipe is None else scheduler_choices(pipe)


def is_flow_matching(scheduler: Any) -> bool:
    """A flow-matching sampler: the FlowMatch classes, and others set up for flow (Sana's DPM-Solver with
    use_flow_sigmas and prediction_type "flow_prediction"), whose models take no DDPM-family sampler."""
    if type(scheduler).__name__.startswith("FlowMatch"):
        return True
    config = getattr(scheduler, "config", None) or {}
    return bool(config.get("use_flow_sigmas")) or config.get("prediction_type") == "flow_prediction"


def _table_for(pipe: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    if pipe is not None and is_flow_matching(getattr(pipe, "scheduler", None)):
        return _FLOW_SCHEDULERS
    return _SCHEDULERS


def scheduler_name(scheduler: Any) -> str:
    """The short name of a scheduler instance, or its class name when none fits."""
    cls = type(scheduler).__name__
    table = _FLOW_SCHEDULERS if is_flow_matching(scheduler) else _SCHEDULERS
    for name, (cls_name, overrides) in table.items():
        if cls_name == cls and all(scheduler.config.get(k) == v for k, v in overrides.items()):
            if name == "euler" and scheduler.config.get("use_karras_sigmas"):
                continue
            return name
    return cls


def effective_config(scheduler: Any, same_class: bool = True) -> dict[str, Any]:
    """`scheduler`'s config with every setting it runs with, for from_config.

    from_config drops the keys a config lists in `_use_default_values` (those it was built
    without), but a pipeline's __init__ may have rewritten them since: StableDiffusionPipeline
    turns a missing steps_offset (default 0) into 1 and leaves the key listed, so a plain
    from_config copy ran timesteps [750, 500, ...] where pipe(...) runs [751, 501, ...]. A copy of
    the same class keeps every key; another class keeps the listed keys only where their value is
    no longer the old class's own default (a rewrite), and takes its own defaults for the rest."""
    config = dict(scheduler.config)
    listed = config.pop("_use_default_values", None) or []
    if same_class:
        return config
    defaults = inspect.signature(type(scheduler).__init__).parameters
    for key in listed:
        param = defaults.get(key)
        if param is not None and key in config and config[key] == param.default:
            del config[key]
    return config


def own_scheduler_name(pipe: Any) -> str:
    """The name the pipeline's own scheduler goes by: nbdiffuse's short name where one fits, else its
    class name (e.g. "LCMScheduler"). make_scheduler(pipe, this name) gives a copy of it, and
    scheduler_choices(pipe) lists it first: the default of every run, as pipe(...) runs it."""
    return scheduler_name(pipe.scheduler)


def scheduler_choices(pipe: Any) -> list[str]:
    """The samplers trace() accepts for `pipe`: the pipeline's own first where no short name fits it
    (its class name, own_scheduler_name), then nbdiffuse's short names."""
    table = list(_table_for(pipe))
    own = own_scheduler_name(pipe)
    return table if own in table else [own] + table


def make_scheduler(pipe: Any, name: Any = None):
    """A fresh scheduler for one run: never the pipeline's own, whose state a run would change.

    None, or the own scheduler's class name (own_scheduler_name), gives a copy of the pipeline's own."""
    base = pipe.scheduler
    if name is None or (isinstance(name, str) and name == type(base).__name__):
        return type(base).from_config(effective_config(base))
    if isinstance(name, diffusers.SchedulerMixin):
        return type(name).from_config(effective_config(name))
    table = _table_for(pipe)
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"scheduler must be None or one of {', '.join(table)}, or {type(base).__name__!r} "
                         f"(the pipeline's own); got {name!r}")
    cls_name, overrides = table[name]
    cls = getattr(diffusers, cls_name)
    return cls.from_config(effective_config(base, same_class=cls is type(base)), **overrides)


def scheduler_from_params(class_name: str, config: dict[str, Any]):
    """Rebuild a scheduler recorded in a trajectory's params."""
    cls = getattr(diffusers, class_name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, diffusers.SchedulerMixin):
        raise ValueError(f"unknown scheduler class {class_name!r} in trajectory params")
    config = {k: v for k, v in copy.deepcopy(config).items() if not k.startswith("_")}
    return cls.from_config(config)
