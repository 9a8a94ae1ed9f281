"""Decision curves: at which step of a run its picture's attributes are decided.

A run is traced; then, at a spread of its steps k, fresh runs continue from the x0 it predicted at
k, noised anew to where step k left the noise (the way image to image starts: img2img.noised, so
a sampler that draws no noise of its own still gets fresh noise), with other seeds. Where nearly
every such continuation keeps an attribute of the original's final picture, that attribute was
decided by step k. For the embedded shapes model the attributes are its world's (colour, shape,
position, size, background), read by nbdiffuse.shapes' evaluator; for other models
`keep["picture"]` is how alike the final pictures are (1 - mean absolute pixel difference / 255;
no download, no learned metric).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .capabilities import run_reason
from .decision_plot import plot_decision_curve
from .img2img import takes_image
from .inpaint_loop import state_of
from .controlnet import control_args_of
from .families import default_guidance
from .pipe_attrs import speaks_shapes
from .pag import plan_from_params
from .trace import prepare
from .trajectory import Trajectory
from .validate import check_int, check_steps, show_value

SHAPES_ATTRIBUTES = ("color", "shape", "position", "size", "background")
DEFAULT_POINTS = 6  # steps branched at when `at` is not given, spread over the run
MAX_SAMPLES = 64


@dataclass
class DecisionCurve:
    """steps: the k each point branched after; keep[attribute]: per k, the share of continuations whose final
    picture kept the original's attribute. trajectory: the original run; samples: continuations per k."""

    steps: list[int]
    keep: dict[str, list[float]]
    samples: int
    trajectory: Trajectory
    original: dict[str, Any] = field(default_factory=dict)  # the original's attributes (shapes model)

    def plot(self, width: int = 520, height: int = 260, theme: str = "light", mark: str | None = "color",
             level: float = 0.9) -> Any:
        """The curve as a PIL picture (core/decision_plot.py): a line per attribute, a legend, and a dashed
        mark where `mark` is decided ("colour decided here"); theme "light" or "dark"."""
        return plot_decision_curve(self, width=width, height=height, theme=theme, mark=mark, level=level)

    def decided(self, attribute: str, level: float = 0.9) -> int | None:
        """The first k from which `attribute` is kept in at least `level` of the continuations, at every
        later point too; None if it never is."""
        if attribute not in self.keep:
            raise ValueError(f"attribute must be one of {', '.join(self.keep)}, got {show_value(attribute)}")
        values = self.keep[attribute]
        for i, k in enumerate(self.steps):
            if all(v >= level for v in values[i:]):
                return k
        return None


def decision_curve(pipe: Any, prompt: str, steps: int = 30, guidance: float | None = None, seed: int = 0,
                   samples: int = 3, at: Sequence[int] | None = None, negative_prompt: str = "",
                   scheduler: Any = None, **trace_args: Any) -> DecisionCurve:
    """Trace `prompt`, then at each step k of `at` (default: DEFAULT_POINTS steps spread over the run) let
    `samples` continuations with fresh noise finish it, and say which attributes each kept (DecisionCurve).
    guidance: the model's default when None (families.default_guidance: 5 for the embedded model).
    trace_args: trace's other arguments (image, strength, control_image, control_scale, ...)."""
    steps = check_steps(steps)
    check_int("samples", samples, 1, MAX_SAMPLES)  # before any model work
    guidance = default_guidance(pipe) if guidance is None else guidance
    run = prepare(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance, seed=seed,
                  scheduler=scheduler, **trace_args)
    _points(at, run.total_steps)
    traj = run.execute()
    return decision_curve_of(pipe, traj, samples=samples, at=at, seed=seed)


def decision_curve_of(pipe: Any, traj: Trajectory, samples: int = 3, at: Sequence[int] | None = None,
                      seed: int | None = None) -> DecisionCurve:
    """The decision curve of a run already made (the Explorer's shown run): continuations from its own steps,
    with its control pictures and settings and its place in the schedule (image to image starts later).
    seed: where the continuations' seeds start (default: the run's)."""
    samples = check_int("samples", samples, 1, MAX_SAMPLES)
    if not traj.has_x0:
        raise ValueError(f"a decision curve continues a run from its x0: {traj.params.get('pipeline')} gives only "
                         "the noisy latent x_t (it runs its own loop)")
    if not traj.capabilities["branch"]:  # x0 read from a pipeline's own loop: nbdiffuse cannot continue that loop
        raise ValueError(run_reason(traj.params, "a decision curve (continuations from the run's own steps)"))
    if traj.stopped or len(traj) < traj.total_steps:
        raise ValueError(f"a decision curve needs a finished run; this one stopped after {len(traj)} of "
                         f"{traj.total_steps} steps")
    seed = int(traj.params["seed"]) if seed is None else seed
    ks = _points(at, len(traj))
    judge = _shapes_judge() if speaks_shapes(pipe) else None
    final = np.asarray(traj.image(-1, decoder="full").convert("RGB"))
    original = judge(final) if judge is not None else {}
    keys = SHAPES_ATTRIBUTES if judge is not None else ("picture",)
    keep: dict[str, list[float]] = {key: [] for key in keys}
    for k in ks:
        kept: dict[str, float] = {key: 0.0 for key in keys}
        for s in range(samples):
            picture = _continue_from(pipe, traj, k, seed + 1 + s + 1000 * (k + 1))
            if judge is not None:
                measured = judge(picture)
                for key in keys:
                    kept[key] += float(measured[key] == original[key])
            else:
                kept["picture"] += 1.0 - float(np.abs(picture.astype(float) - final).mean()) / 255.0
        for key in keys:
            keep[key].append(kept[key] / samples)
    return DecisionCurve(steps=ks, keep=keep, samples=samples, trajectory=traj, original=original)


def _points(at: Sequence[int] | None, steps: int) -> list[int]:
    last = steps - 2  # a continuation after the last step would have nothing to run
    if last < 0:
        raise ValueError(f"steps must be at least 2 for a decision curve (one step to branch after, one to run), "
                         f"got {steps}")
    if at is None:
        return sorted({round(x) for x in np.linspace(0, last, min(DEFAULT_POINTS, last + 1))})
    if isinstance(at, (str, bytes)) or not hasattr(at, "__iter__"):
        raise TypeError(f"at must be a sequence of step indices, got {show_value(at)}")
    ks = [check_int("at", k, 0, last) for k in at]
    if not ks:
        raise ValueError("at must name at least one step")
    return sorted(set(ks))


def _continue_from(pipe: Any, traj: Trajectory, k: int, seed: int) -> np.ndarray:
    """The final picture of a run that starts from step k's x0, noised with `seed` to where step k left it:
    the same schedule, guidance and control from there (step k is the k-th the run made; image to image
    runs started `start_step` steps into the schedule)."""
    p = traj.params
    begin = int(p.get("start_step") or 0)
    run = prepare(pipe, p["prompt"], negative_prompt=p["negative_prompt"] or "", steps=p["steps"],
                  guidance=p["guidance"][0], seed=seed, scheduler=p["scheduler"], height=p["height"],
                  width=p["width"], **control_args_of(traj, lead=begin), **picture_args_of(traj, pipe))
    clean = traj[k].pred_x0
    shape = tuple(traj.initial_latents.shape)
    if clean is None or clean.numel() != traj.initial_latents.numel():
        raise ValueError(f"decision curves need x0 in the loop's latent layout; {p.get('pipeline')} runs keep "
                         "another (or none)")
    run.start_clean = clean.reshape(shape)
    if traj.mask is not None:  # inpainting: the run's own picture latents and mask (core/inpaint_loop.py), new noise
        run.inpainting = state_of(run.family, traj)
    pag = plan_from_params(p)  # a PAG run's own pag (core/pag.py), as its steps asked it, not the pipeline's default
    run.pag = None if pag is None else pag.after(k)
    run.start = begin + k + 1
    run.schedule = list(p["guidance"][k + 1:]) or [p["guidance"][-1]]
    if run.controlnet is not None:  # its scales from step k + 1 on; its window over the run's part of the schedule
        run.controlnet.plan.scales = run.controlnet.plan.scales[begin + k + 1:] or run.controlnet.plan.scales[-1:]
        run.controlnet.first = begin * int(getattr(run.scheduler, "order", 1))
    done = run.execute()
    return np.asarray(done.image(-1, decoder="full").convert("RGB"))


def picture_args_of(traj: Trajectory, pipe: Any) -> dict[str, Any]:
    """trace's picture arguments a continuation of `traj` needs where `pipe` takes a start picture (an image-to-image
    or inpainting pipeline: its picture, and mask), planned over the whole schedule (strength 1) as every
    continuation is, which then starts at its own place; {} for the others (a continuation starts from x0)."""
    if traj.params.get("image") is None or not takes_image(pipe):
        return {}
    if traj.start_picture is None:
        raise ValueError("this run's start picture was not kept with it (a file saved before start pictures were), "
                         f"and {type(pipe).__name__} needs it for every continuation")
    mask = {"mask_image": traj.mask} if traj.mask is not None else {}
    return {"image": traj.start_picture, "strength": 1.0, **mask}


def _shapes_judge():
    from ..shapes.evaluate import measure  # here: scipy, which only the shapes model's judge needs

    def judge(picture: np.ndarray) -> dict[str, Any]:
        found = measure(picture)
        return {key: getattr(found, key) for key in SHAPES_ATTRIBUTES}
    return judge
