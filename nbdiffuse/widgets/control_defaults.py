"""The Explorer's control values: what suits a model, or a set of saved runs (workshop mode)."""
from __future__ import annotations

import math
from typing import Any

from PIL import Image

from ..core import prepare
from ..core.controlnet import own_control_scale
from ..core.families import adapter_for, default_guidance
from ..core.img2img import takes_image
from ..core.inpaint import takes_mask
from ..core.pipe_attrs import model_name, source
from ..core.validate import check_guidance_value
from ..core.schedulers import own_scheduler_name, scheduler_choices
from .samplers import sampler_arg

EMBEDDED_SOURCE = "nbdiffuse/shapes"


def model_defaults(pipe: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Control values suiting `pipe`, with `given` (checked the way generate() will check them) taking precedence."""
    family = adapter_for(pipe)
    embedded = source(pipe) == EMBEDDED_SOURCE
    options = scheduler_choices(pipe)
    values: dict[str, Any] = {
        "prompt": "big red circle on the left, white background" if embedded else "a lighthouse on a cliff at dusk",
        "negative_prompt": "",
        "seed": 0,
        "steps": 30,
        "guidance": default_guidance(pipe),
        "scheduler": own_scheduler_name(pipe),  # the pipeline's own: a run then matches pipe(...)
    }
    if getattr(pipe, "controlnet", None) is not None:  # the pipeline's own, as for the scheduler
        values["control_scale"] = own_control_scale(pipe)
    values.update({k: v for k, v in given.items() if k not in ("height", "width")})
    default_h, default_w = family.default_size() or (given.get("height") or 0, given.get("width") or 0)
    sizes = [] if embedded else size_choices(max(default_h, default_w), family.vae_factor)
    height, width = given.get("height"), given.get("width")
    if sizes or height is not None or width is not None:
        sizes = sorted(set(sizes) | {v for v in (height, width) if isinstance(v, int)})
    if not isinstance(values["guidance"], (int, float)) or isinstance(values["guidance"], bool):
        raise TypeError(f"Explorer(guidance=...) must be a number (the slider's start), got {values['guidance']!r}")
    # prepare() checks every value the way generate() will, without model work.
    run = prepare(pipe, values["prompt"], negative_prompt=values["negative_prompt"], steps=values["steps"],
                  guidance=values["guidance"], seed=values["seed"], scheduler=sampler_arg(pipe, values["scheduler"]),
                  height=height, width=width, **blank_start(pipe, height or default_h, width or default_w))
    label = model_name(pipe, type(pipe).__name__)
    return dict(values, guidance=float(values["guidance"]), scheduler_options=options, size_options=sizes,
                height=run.height, width=run.width, guidance_max=float(max(15, math.ceil(2 * values["guidance"]))),
                image_size=[run.width, run.height], model_label=label)


def blank_start(pipe: Any, height: Any, width: Any) -> dict[str, Any]:
    """An image-to-image class (StableDiffusionImg2ImgPipeline, ...) cannot be checked without a picture: a
    blank one of the size asked (or the model's own) stands in, at strength 1 (every step: the strength
    control is checked at each Generate, with the steps then chosen); each run takes the picture given then."""
    if not takes_image(pipe):
        return {}
    factor = adapter_for(pipe).vae_factor
    side = [v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 8 * factor for v in (width, height)]
    mask = {"mask_image": Image.new("L", tuple(side), 255)} if takes_mask(pipe) else {}  # an inpainting class's
    return {"image": Image.new("RGB", tuple(side)), "strength": 1.0, **mask}


def saved_defaults(history: list, given: dict[str, Any]) -> dict[str, Any]:
    """Control values for workshop mode: taken from the first saved run (no model to ask)."""
    p = history[0].params
    options = sorted({traj.params["scheduler"] for traj in history})
    guidance = given.get("guidance", p["guidance"][0] if p["guidance"] else 1.0)
    check_guidance_value(guidance)
    values = dict(prompt=p["prompt"], negative_prompt=p["negative_prompt"] or "", seed=int(p["seed"]),
                  steps=int(p["steps"]), scheduler=p["scheduler"])
    values.update({k: v for k, v in given.items() if k in ("prompt", "negative_prompt", "seed", "steps",
                                                             "scheduler")})
    top = max(max(traj.guidances or [1.0]) for traj in history)
    label = p.get("model") or p.get("pipeline") or "saved runs"
    return dict(values, guidance=float(guidance), scheduler_options=options, size_options=[],
                height=int(p["height"]), width=int(p["width"]), image_size=[int(p["width"]), int(p["height"])],
                guidance_max=float(max(15, math.ceil(2 * top))), model_label=f"{label} (saved runs)")


def size_choices(side: int, multiple: int) -> list[int]:
    """Square sides around the model's own size, each a multiple of the VAE factor."""
    choices = {max(multiple, round(side * f / multiple) * multiple) for f in (0.5, 0.75, 1, 1.25, 1.5, 2)}
    return sorted(choices)
