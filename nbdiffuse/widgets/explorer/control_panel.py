"""The Explorer's ControlNet controls, for a pipeline with a ControlNet (capabilities["control"]).

The control picture comes from a sketch pad (`ex.control_pad()`: white strokes on black, read at
each Generate, so the shape appears where it was drawn), an upload, or the edge map of any picture
(`ex.control_from(picture, edges=True)`, core/edges.py). The control scale and its start/end window
are traits with sliders, guess mode a checkbox; the scale steers a running run from its next step
(RunControl.set_control_scale), as the guidance slider does. `control_run` carries the shown run's
control per step (its strength, the scale asked) for the strip under the scrubber; "no control from
step k" is a branch with control_scale 0 after k (`ex.without_control_from(k)`, core/branch.py).

The Explorer inherits ControlPanel; its front end is control.js.
"""
from __future__ import annotations

from typing import Any

import traitlets as t
from PIL import Image

from ...core.controlnet import check_guess_mode, controlnet_name, controlnet_of
from ...core.families import adapter_for
from ...core.edges import MAX_WIDTH, edge_map, looks_like_lines
from ...core.validate import check_control_scale, check_number
from .. import start_picture
from ..sketch import SketchPad

CONTROL_ARGS = ("control_image", "control_scale", "control_start", "control_end", "control_guess_mode")
NO_CONTROLNET = ("this model has no ControlNet, so it takes no control picture: load one with "
                 "nbd.load_pipeline(source, controlnet=...) (\"outline\" for the embedded model) and "
                 "ex.set_pipeline(...) it")


def check_outline(picture: Image.Image, pipe: Any, name: str = "control_image") -> None:
    """The embedded model's outline ControlNet reads light lines on black: refuse a picture in colour."""
    net = controlnet_of(pipe)
    if net is not None and controlnet_name(net) == "outline" and not looks_like_lines(picture):
        raise ValueError(f"{name} is not an outline: the outline ControlNet reads white lines on black (draw one "
                         "on ex.control_pad(), or make one from this picture with edges=True / the Edges button); "
                         "this picture is mostly light or in colour")


def control_state(traj: Any) -> dict[str, Any]:
    """The `control_run` trait for a run: its control per step, or {} for a run without one."""
    settings = traj.params.get("control") if traj is not None else None
    if not settings:
        return {"control_run": {}}
    steps = list(traj.steps)
    return {"control_run": {"strengths": [float(s.control_strength or 0.0) for s in steps],
                            "scales": [float(s.control_scale or 0.0) for s in steps],
                            "start": settings["start"], "end": settings["end"], "model": settings["model"],
                            "guess_mode": bool(settings.get("guess_mode"))}}


class ControlPanel(t.HasTraits):
    """The Explorer's ControlNet traits and API (see the module docstring). Needs the Explorer's `pipe`,
    `_runner`, `_quiet`, `_set_quietly`, `_show_error`, `shown`, `shown_step` and `branch`."""

    control_scale = t.Float(1.0).tag(sync=True)
    control_start = t.Float(0.0).tag(sync=True)
    control_end = t.Float(1.0).tag(sync=True)
    control_guess_mode = t.Bool(False).tag(sync=True)  # diffusers' guess mode (core/controlnet.py)
    use_control = t.Bool(False).tag(sync=True)  # Generate uses the control picture
    control_thumb = t.Bytes(b"").tag(sync=True)
    control_kind = t.Unicode("").tag(sync=True)  # what the picture is: "sketch", "picture" or "edges"
    control_run = t.Dict().tag(sync=True)  # the shown run's control: strengths, scales, start, end, model

    _control_source: Any = None
    _control_edges = False

    @t.validate("control_scale")
    def _check_control_scale(self, proposal: Any) -> float:
        return check_control_scale(proposal["value"])

    @t.validate("control_start", "control_end")
    def _check_control_window(self, proposal: Any) -> float:
        return self._window_value(proposal["trait"].name, proposal["value"])

    @t.observe("control_scale")
    def _control_scale_changed(self, change: dict) -> None:
        if self._quiet:
            return
        job = self._runner.current
        if job is not None and not job.done.is_set():
            job.control.set_control_scale(change["new"])

    # --- the control picture ------------------------------------------------------------
    def control_from(self, source: Any = None, *, edges: bool = False) -> None:
        """Steer the next runs with a control picture (PIL image, uint8 array, file path, image bytes or a
        SketchPad, read at each Generate); edges=True uses the picture's edge map (core/edges.py);
        None goes back to runs without control."""
        self._set_control(source, edges, "source")

    def _set_control(self, source: Any, edges: Any, name: str) -> None:
        """control_from, naming the picture `name` in messages (the page's upload: "control picture")."""
        if not isinstance(edges, bool):
            raise TypeError(f"edges must be True or False, got {edges!r}")
        if source is None:
            self._control_source, self._control_edges = None, False
            self.control_thumb, self.use_control, self.control_kind = b"", False, ""
            return
        if controlnet_of(self.pipe) is None:
            raise ValueError(NO_CONTROLNET)
        raw = source if isinstance(source, SketchPad) else start_picture.picture_of(source, name)
        picture = self._control_picture_of(raw, edges, name)
        self._control_source, self._control_edges = raw, edges
        self.control_kind = "edges" if edges else "sketch" if isinstance(source, SketchPad) else "picture"
        self.control_thumb, self.use_control = start_picture.thumbnail(picture), True

    def control_pad(self, **options: Any) -> SketchPad:
        """A SketchPad for an outline (white on black) that the next runs are steered by: show it, draw the
        shape where you want it, press Generate. options: SketchPad's."""
        if controlnet_of(self.pipe) is None:
            raise ValueError(NO_CONTROLNET)
        options.setdefault("background", "black")
        options.setdefault("colors", ("white", "black"))
        pad = SketchPad(**start_picture.pad_size(self.pipe, options))
        pad.brush.value = max(1, pad.size[0] // 32)  # a pen about 2 pixels wide on the 64-pixel model
        self.control_from(pad)
        # each finished stroke shows in the Explorer's control thumbnail at once (the pad draws it first)
        pad.canvas.on_mouse_up(lambda *_: self._pad_drawn(pad))
        return pad

    def _pad_drawn(self, pad: SketchPad) -> None:
        if self._control_source is pad:
            self.control_thumb = start_picture.thumbnail(pad.image)

    def _control_picture_of(self, source: Any, edges: bool, name: str = "control_image") -> Image.Image:
        picture = start_picture.picture_of(source, name)
        if edges:  # lines about 2 pixels wide once the picture is brought to the run's size
            side = max(adapter_for(self.pipe).default_size() or (64, 64))
            picture = edge_map(picture, width=max(1, min(MAX_WIDTH, round(2 * max(picture.size) / side))))
        check_outline(picture, self.pipe, name)
        return picture

    def _control_defaults(self, given: dict[str, Any]) -> None:
        """Explorer(control_image=..., control_scale=..., control_start=..., control_end=...): the control
        picture (anything control_from takes) and the sliders' first values, checked as the sliders check them."""
        if not given:
            return
        if controlnet_of(self.pipe) is None:
            raise ValueError(f"Explorer({', '.join(f'{k}=...' for k in given)}): {NO_CONTROLNET}")
        checks = {"control_scale": check_control_scale, "control_guess_mode": check_guess_mode}
        values = {key: checks[key](value) if key in checks else self._window_value(key, value)
                  for key, value in given.items() if key != "control_image"}
        if "control_image" in given:
            self._set_control(given["control_image"], False, "control_image")
        self._set_quietly(values)

    @staticmethod
    def _window_value(name: str, value: Any) -> float:
        return check_number(name, value, 0.0, 1.0, " (a share of the run's steps)")

    # --- runs -----------------------------------------------------------------------------
    def control_params(self, given: dict, params: dict) -> dict[str, Any]:
        """nbd.trace's control arguments for the next Generate: what generate() was given, the rest from
        the controls; {} for a run without control. A run of the model's own size (`params` height and
        width None) stays so: the control picture (a 256-pixel sketch pad) is resized to it."""
        given = {key: value for key, value in given.items() if value is not None}
        if "control_image" in given:
            given["control_image"] = self._control_picture_of(given["control_image"], False)
        elif self.use_control and self._control_source is not None and controlnet_of(self.pipe) is not None:
            given["control_image"] = self._control_picture_of(self._control_source, self._control_edges)
            if isinstance(self._control_source, SketchPad):
                self.control_thumb = start_picture.thumbnail(given["control_image"])
        if "control_image" not in given:
            return given  # control settings without a picture: nbd.trace says what is missing
        if params.get("height") is None and params.get("width") is None and params.get("image") is None:
            given["height"], given["width"] = adapter_for(self.pipe).default_size()
        return {"control_scale": self.control_scale, "control_start": self.control_start,
                "control_end": self.control_end, "control_guess_mode": self.control_guess_mode, **given}

    def controls_of_control(self, run: Any) -> dict[str, Any]:
        """The control sliders' values for a prepared run (what it runs with)."""
        plan = getattr(getattr(run, "controlnet", None), "plan", None)
        if plan is None:
            return {}
        return {"control_scale": float(plan.scales[0]) if plan.scales else self.control_scale,
                "control_start": plan.start, "control_end": plan.end, "control_guess_mode": plan.guess_mode}

    def branch_control_changes(self, parent: Any, at: int) -> dict[str, Any]:
        """"Branch here": the control sliders that differ from the shown run at step `at`."""
        settings = parent.params.get("control") if parent is not None else None
        if not settings:
            return {}
        changes: dict[str, Any] = {}
        scales = settings["scale"]
        if scales and self.control_scale != scales[min(at + 1, len(scales) - 1)]:
            changes["control_scale"] = self.control_scale
        for key in ("start", "end"):
            if getattr(self, f"control_{key}") != settings[key]:
                changes[f"control_{key}"] = getattr(self, f"control_{key}")
        if self.control_guess_mode != bool(settings.get("guess_mode")):
            changes["control_guess_mode"] = self.control_guess_mode
        return changes

    def without_control_from(self, k: int | None = None, *, background: bool = True) -> None:
        """What if no control from step k: branch the shown run after step k (default: the shown step)
        with control_scale 0 for the rest."""
        traj = self.shown
        if traj is not None and not traj.params.get("control"):
            raise ValueError("the shown run has no control picture: \"no control from here\" needs a run made "
                             "with one (ex.control_from(...) or ex.control_pad(), then Generate)")
        self.branch(k, control_scale=0.0, background=background)
        self._set_quietly({"control_scale": 0.0})


def control_handlers(ex: Any, step_of: Any) -> dict[str, Any]:
    """The page's ControlNet requests (browser.BrowserRequests)."""
    return {
        "control_upload": lambda c, b: ex._set_control(bytes(b[0]) if b else b"", bool(c.get("edges")),
                                                       "control picture"),
        "control_clear": lambda c, b: ex.control_from(None),
        "no_control": lambda c, b: ex.without_control_from(step_of(c)),
    }
