"""Perturbed-attention guidance (PAG): diffusers' PAG pipelines of SD, SDXL, SD3 and PixArt-sigma (and the
ControlNet ones of SD and SDXL) in nbdiffuse's loop.

PAG (Ahn et al. 2024; diffusers' PAGMixin) adds one batch row per step: the prompt's row again, run with
the self-attention of the chosen layers (`pipe.pag_applied_layers`) replaced by the identity, so the model
"forgets" the picture's structure there. The step's output is

    uncond + guidance * (cond - uncond) + pag * (cond - perturbed)       (cond + pag * (cond - perturbed) at
                                                                         guidance <= 1)

with pag = pag_scale, or with pag_adaptive_scale > 0 pag_scale - pag_adaptive_scale * (1000 - t) (at least 0),
as diffusers' `_get_pag_scale` makes it. A run records each step's perturbed prediction (Step.eps_perturbed)
and the pag used (Step.pag_scale), so the what-if re-weighs PAG as it re-weighs guidance
(Trajectory.guided_x0(k, guidance, pag_scale=...)) and a branch changes it from any step.

The batch layout is diffusers': (uncond, cond, perturbed) with guidance, (cond, perturbed) without, and the
layers' processors are the PAG pipeline's own pair, the one for the step's layout (a live guidance change
across 1 switches them); the denoiser's own processors come back when the run ends, however it ends.
pag_scale and pag_adaptive_scale are the pipeline's own keywords: trace(..., pipe_kwargs={"pag_scale": 5}).
RunControl.set_pag_scale changes pag_scale from the next step, as set_guidance changes guidance (0 runs the step
without the perturbed row, as diffusers does); params["pag"]["scales"] keeps what each step asked, so a branch
or a decision curve replays those steps exactly.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, replace
from typing import Any

import torch

from .validate import check_number

KEYWORDS = ("pag_scale", "pag_adaptive_scale")
MAX_PAG_SCALE = 100.0  # far past the paper's 1 to 6; the sum overflows to a black picture long before
MAX_ADAPTIVE = 1.0  # per unit of timestep: 1 / 1000 already turns PAG off after the first step


def is_pag(pipe: Any) -> bool:
    """A pipeline with diffusers' PAGMixin (its pag_applied_layers and processors)."""
    from diffusers.pipelines.pag.pag_utils import PAGMixin

    return isinstance(pipe, PAGMixin)


@dataclass(frozen=True)
class PagPlan:
    """A run's PAG settings: its scale, adaptive scale and the layers it perturbs, and the pag_scale asked at each
    step where it changed within the run (a live change, a branch): `scales`, empty when every step asks `scale`."""
    scale: float
    adaptive_scale: float
    layers: tuple[str, ...]
    scales: tuple[float, ...] = ()

    @property
    def on(self) -> bool:
        """diffusers' do_perturbed_attention_guidance for some step: a scale above 0 and a layer to perturb."""
        return len(self.layers) > 0 and (self.scale > 0 or any(s > 0 for s in self.scales))

    def asked(self, k: int) -> float:
        """The pag_scale step k asks for (past the last of `scales`: the last one, as guidance continues)."""
        if not self.scales:
            return self.scale
        return self.scales[k] if k < len(self.scales) else self.scales[-1]

    def perturbs(self, asked: float) -> bool:
        """Whether a step asking `asked` runs the perturbed row (diffusers: pag_scale > 0 and a layer)."""
        return asked > 0 and len(self.layers) > 0

    def scale_at(self, t: torch.Tensor, asked: float | None = None) -> float:
        """The pag of a step at timestep t that asks `asked` (default: `scale`), computed as diffusers'
        _get_pag_scale computes it (t: a CPU tensor of the scheduler's timesteps, no device wait), so the sum is
        bit for bit the pipeline's."""
        asked = self.scale if asked is None else asked
        if not (self.adaptive_scale > 0 and self.perturbs(asked)):
            return asked
        signal = asked - self.adaptive_scale * (1000 - t)
        return 0.0 if signal < 0 else float(signal)

    def asked_for(self, pag: float, t: Any) -> float:
        """The pag_scale a step at timestep t asks for to get `pag` (scale_at's inverse): with an adaptive scale,
        `pag` plus what it takes away at t; a what-if's PAG of a step made real as a branch's pag_scale."""
        if self.adaptive_scale > 0 and pag > 0:
            return pag + self.adaptive_scale * (1000 - float(t))
        return pag

    def params(self, steps: int) -> dict:
        """params["pag"] of a run of `steps` steps: "scales" holds the pag_scale asked at each of them (the run
        writes each step's as it makes it: a live change shows there; steps never made keep the plan)."""
        return {"scale": self.scale, "adaptive_scale": self.adaptive_scale, "layers": list(self.layers),
                "scales": [self.asked(k) for k in range(steps)]}

    def after(self, k: int) -> "PagPlan":
        """This plan for a run that goes on from step k + 1 (its first step is step k + 1's)."""
        return replace(self, scales=self.scales[k + 1:] or self.scales[-1:])

    def with_changes(self, changes: dict, at: int, total: int) -> "PagPlan":
        """This plan for a branch after step `at` of a `total`-step run: its pag_scale from step at + 1 on (else
        the steps' own, as asked), its pag_adaptive_scale."""
        adaptive = check_pag_value("pag_adaptive_scale", changes.get("pag_adaptive_scale", self.adaptive_scale),
                                   MAX_ADAPTIVE)
        if "pag_scale" not in changes:
            return PagPlan(self.scale, adaptive, self.layers, tuple(self.asked(k) for k in range(total)))
        scale = check_pag_value("pag_scale", changes["pag_scale"], MAX_PAG_SCALE)
        done = [self.asked(k) for k in range(at + 1)]
        return PagPlan(scale, adaptive, self.layers, tuple(done + [scale] * (total - at - 1)))


def check_pag_value(name: str, value: Any, hi: float) -> float:
    return check_number(name, value, 0.0, hi)  # NaN and infinities are outside the range


def own_defaults(pipe: Any) -> dict[str, float]:
    """A PAG pipeline's own pag_scale and pag_adaptive_scale (its __call__'s defaults: 3 and 0)."""
    params = inspect.signature(type(pipe).__call__).parameters
    return {name: params[name].default if name in params else fallback
            for name, fallback in zip(KEYWORDS, (3.0, 0.0))}


def plan_pag(pipe: Any, pipe_kwargs: dict) -> tuple[PagPlan | None, dict]:
    """(the run's PagPlan, the other pipe_kwargs) for a PAG pipeline; (None, pipe_kwargs) for any other.
    pag_scale and pag_adaptive_scale default to the pipeline's own (3 and 0)."""
    if not is_pag(pipe):
        return None, pipe_kwargs
    defaults = own_defaults(pipe)
    values = {}
    for name, hi in zip(KEYWORDS, (MAX_PAG_SCALE, MAX_ADAPTIVE)):
        values[name] = check_pag_value(f"pipe_kwargs[{name!r}]", pipe_kwargs.get(name, defaults[name]), hi)
    layers = tuple(getattr(pipe, "pag_applied_layers", None) or [])
    plan = PagPlan(values["pag_scale"], values["pag_adaptive_scale"], layers)
    if plan.on:
        check_layers(pipe, layers)
    rest = {k: v for k, v in pipe_kwargs.items() if k not in KEYWORDS}
    return plan, rest


def check_layers(pipe: Any, layers: tuple[str, ...], name: str = "pipe.pag_applied_layers") -> None:
    """Each of pipe.pag_applied_layers must name a self-attention layer of the denoiser, by diffusers' rule
    (a regular expression searched in the layer's name; "blocks.1" does not match "blocks.10"): refused before
    any model work, not at the first step."""
    from diffusers.models.attention_processor import Attention

    from .families.base import denoiser_of

    names = [name for name, module in denoiser_of(pipe).named_modules()
             if isinstance(module, Attention) and not module.is_cross_attention]
    for layer in layers:
        if not any(_matches(layer, name) for name in names):
            blocks = sorted({name.rsplit(".attentions.", 1)[0].rsplit(".transformer_blocks.", 1)[0] for name in names})
            raise ValueError(f"{name}: {layer!r} matches no self-attention layer of "
                             f"{type(denoiser_of(pipe)).__name__} (a pattern searched in the layers' names, e.g. "
                             f"{', '.join(repr(b) for b in blocks[:6])}); set others with "
                             "pipe.set_pag_applied_layers([...])")


def _matches(layer: str, name: str) -> bool:
    last, tail = layer.split(".")[-1], name.split(".")[-1]
    integral = last.isnumeric() and tail.isnumeric() and last == tail  # diffusers' "fake integral match"
    try:
        return re.search(layer, name) is not None and not integral
    except re.error:
        return False


def plan_from_params(params: dict) -> PagPlan | None:
    """A run's PagPlan from its params["pag"] (None for a run without PAG)."""
    pag = params.get("pag")
    if pag is None:
        return None
    scales = tuple(float(s) for s in pag.get("scales") or ())  # files written before live PAG: `scale` throughout
    return PagPlan(float(pag["scale"]), float(pag["adaptive_scale"]), tuple(pag["layers"]), scales)


def guided(cond: torch.Tensor, uncond: torch.Tensor | None, guidance: float, perturbed: torch.Tensor | None = None,
           pag: float = 0.0) -> torch.Tensor:
    """The output the sampler gets, in diffusers' order of operations (bit for bit its pipelines' sums)."""
    out = cond if uncond is None else uncond + guidance * (cond - uncond)
    if perturbed is not None:
        out = out + pag * (cond - perturbed)
    return out


class PagLayers:
    """The run's perturbed layers, for `with`: use(guided) sets the PAG pipeline's processor for the step's
    batch layout on them (only when the layout changes), use(None) gives a step without PAG (pag_scale 0, live)
    the denoiser's own processors, and those come back at the end. Layers a run planned without PAG (pag_scale
    0 at its start) are checked when a live change first turns it on."""

    def __init__(self, pipe: Any, denoiser: Any, plan: PagPlan):
        self.pipe, self.denoiser, self.plan = pipe, denoiser, plan
        self._original: dict | None = None
        self._layout: bool | None = None
        self._checked = plan.on  # trace() and branch() checked the layers of a plan that perturbs

    def __enter__(self) -> "PagLayers":
        self._original = dict(self.denoiser.attn_processors)
        return self

    def use(self, guided: bool | None) -> None:
        if self._layout is guided:
            return
        if guided is None:
            self._restore()
            return
        if not self._checked:
            check_layers(self.pipe, self.plan.layers)
            self._checked = True
        self.pipe._set_pag_attn_processor(pag_applied_layers=list(self.plan.layers), do_classifier_free_guidance=guided)
        self._layout = guided

    def _restore(self) -> None:
        if self._original is not None and self._layout is not None:
            self.denoiser.set_attn_processor(dict(self._original))  # diffusers empties the dict it is given
        self._layout = None

    def __exit__(self, *exc: Any) -> None:
        self._restore()


def branch_pag(pipe: Any, params: dict, changes: dict, at: int, total: int) -> PagPlan | None:
    """A branch's PagPlan: the parent's (its layers, the pag_scale its steps asked), with the branch's pag_scale /
    pag_adaptive_scale after step `at` of the branch's `total` steps."""
    plan = plan_from_params(params)
    asked = [key for key in KEYWORDS if key in changes]
    if plan is None:
        if asked:
            raise ValueError(f"{asked[0]}: this run was made without perturbed-attention guidance (by "
                             f"{params.get('pipeline')}); only a PAG pipeline's run can change it")
        return None
    plan = plan.with_changes(changes, at, total)
    ahead = [s for s in plan.scales[at + 1:] if s > 0]
    if ahead and plan.layers and not is_pag(pipe):
        raise ValueError(f"this run used perturbed-attention guidance (pag_scale {ahead[0]:g}); "
                         f"{type(pipe).__name__} has none: branch with a PAG pipeline, or pass pag_scale=0")
    if ahead and plan.layers:
        check_layers(pipe, plan.layers)  # the run's layers, in this pipeline's denoiser
    return plan
