"""ScheduleView: where a sampler's N timesteps fall on the noise schedule, two samplers side by side."""
from __future__ import annotations

from typing import Any

import traitlets as t

from ...core import schedule_math as sm
from ...core.schedulers import scheduler_name, schedulers
from ...core.validate import check_steps
from .common import TeachingWidget, model_label, resolve_pipe

MAX_SAMPLERS = 4


class ScheduleView(TeachingWidget):
    """`nbd.ScheduleView(pipe=None, scheduler=None, steps=20)`.

    scheduler: a sampler name (nbd.schedulers(pipe)) or a list of up to 4; None compares uniform
    spacing with Karras spacing where the pipeline offers both. The steps slider and the sampler
    menus in the widget recompute at once (no model call: only the schedulers' set_timesteps).
    `follow(explorer)` keeps it in step with an Explorer: its steps, its sampler and, as a cursor,
    the step its scrubber shows.
    """

    steps = t.Int(20).tag(sync=True)
    names = t.List(t.Unicode()).tag(sync=True)
    options = t.List(t.Unicode()).tag(sync=True)
    series = t.List(t.Dict()).tag(sync=True)  # SamplerPoints.to_dict() per sampler
    schedule = t.Dict().tag(sync=True)
    cursor = t.Int(-1).tag(sync=True)  # a step to mark (the followed Explorer's frame); -1: none
    error = t.Unicode("").tag(sync=True)

    def __init__(self, pipe: Any = None, scheduler: Any = None, steps: int = 20):
        self.pipe = resolve_pipe(pipe)
        options = schedulers(self.pipe)
        names = self._names(scheduler, options)
        steps = check_steps(steps)
        self._following: Any = None
        super().__init__(_kind="schedule", title="Where the sampler's steps fall on the noise schedule",
                         note=f"schedule of {model_label(self.pipe)}; dots: the noise level the model sees at each step",
                         options=options, names=names, steps=steps,
                         schedule=sm.schedule_table(self.pipe).to_dict(),
                         series=[sm.sampler_points(self.pipe, n, steps).to_dict() for n in names])

    def _names(self, scheduler: Any, options: list[str]) -> list[str]:
        if scheduler is None:
            own = scheduler_name(self.pipe.scheduler)
            first = own if own in options else options[0]
            if "euler_karras" in options and first in ("euler", "euler_karras"):
                return ["euler", "euler_karras"]
            return [first]
        names = [scheduler] if isinstance(scheduler, str) else list(scheduler) if isinstance(scheduler, (list, tuple)) else []
        if not names or len(names) > MAX_SAMPLERS:
            raise ValueError(f"scheduler must be a name or a list of 1..{MAX_SAMPLERS} names from "
                             f"{', '.join(options)}; got {scheduler!r}")
        for name in names:
            if name not in options:
                raise ValueError(f"scheduler must be one of {', '.join(options)}; got {name!r}")
        return names

    @t.validate("steps")
    def _check_steps(self, proposal: dict) -> int:
        return check_steps(proposal["value"])

    @t.observe("steps", "names")
    def _recompute(self, change: dict) -> None:
        try:
            names = self._names(self.names, self.options)
            self.series = [sm.sampler_points(self.pipe, n, self.steps).to_dict() for n in names]
            self.error = ""
        except ValueError as exc:  # a bad choice from the browser: say so, keep the last good plot
            self.error = str(exc)

    def points(self, name: str | None = None) -> dict:
        """The plotted numbers of one sampler (the first when None): timesteps, sigma, abar, snr_db."""
        for entry in self.series:
            if name is None or entry["name"] == name:
                return entry
        raise ValueError(f"name must be one of {', '.join(e['name'] for e in self.series)}; got {name!r}")

    def follow(self, explorer: Any) -> "ScheduleView":
        """Track an nbd.Explorer: its steps and sampler (as the first series) and its scrubber's step."""
        if self._following is not None:
            self._following.unobserve(self._from_explorer, names=["steps", "scheduler", "frame", "n_steps"])
        self._following = explorer
        explorer.observe(self._from_explorer, names=["steps", "scheduler", "frame", "n_steps"])
        self._from_explorer(None)
        return self

    def _from_explorer(self, change: Any) -> None:
        ex = self._following
        with self.hold_trait_notifications():
            if ex.scheduler in self.options:
                rest = [n for n in self.names if n != ex.scheduler][: MAX_SAMPLERS - 1]
                self.names = [ex.scheduler] + rest[:1]
            self.steps = check_steps(ex.steps)
        frame = ex.frame if ex.frame >= 0 else ex.n_steps - 1
        self.cursor = int(frame) if ex.n_steps else -1

    def __repr__(self) -> str:
        return f"ScheduleView({self.names}, steps={self.steps})"
