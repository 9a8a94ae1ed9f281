"""The Explorer's ControlNet controls, for a pipeline with a ControlNet (capabilities["control"]).

The control picture comes from a sketch pad (`ex.control_pad()`: white strokes on black, read at
each Generate, so the shape appears where it was drawn), an upload, or the edge map of any picture
(`ex.control_from(picture, edges=True)`, core/edges.py). A pipeline of several ControlNets
(`control_nets`, a MultiControlNetModel) has a picture slot per ControlNet (`net=j`), each with its own
scale and window (`control_units`: one {"scale", "start", "end"} per ControlNet, the page's sliders by
each slot; generate(control_scale=[...]) from code). The control scale and its start/end window are
traits with sliders, guess mode a checkbox; the scale steers a running run from its next step
(RunControl.set_control_scale), as the guidance slider does. `control_run` carries the shown run's
control per step (its strength, the scale asked) for the strip under the scrubber; "no control from
step k" is a branch with control_scale 0 after k (`ex.without_control_from(k)`, core/branch.py).

The Explorer inherits ControlPanel; its front end is control.js.
"""
from __future__ import annotations

from typing import Any

import traitlets as t
from PIL import Image

from ...core.controlnet import (check_guess_mode, check_window, controlnet_name, controlnet_of, nets_of,
                                own_control_scale, per_net)
from ...core.control_mode import check_control_mode, modes_of, union_types
from ...core.families import adapter_for
from ...core.generic_control import check_no_mode, control_slots, takes_guess_mode
from ...core.edges import MAX_WIDTH, edge_map, looks_like_lines
from ...core.validate import check_control_scale, check_number
from .. import start_picture
from ..sketch import SketchPad

CONTROL_ARGS = ("control_image", "control_scale", "control_start", "control_end", "control_guess_mode", "control_mode")
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


def control_traits(pipe: Any) -> dict[str, Any]:
    """What the control panel shows for a pipeline: `control_nets`, how many control pictures it takes (a
    MultiControlNetModel's ControlNets; 1 for a model that reads one itself; 0: none), and `control_guess`,
    whether it has a guess mode (the box shows only then), and `control_types`, for each slot a union
    ControlNet's kinds of picture (0: a ControlNet of one kind; the slot's kind select shows only then)."""
    net = controlnet_of(pipe)
    n = control_slots(pipe)
    types = [union_types(one) or 0 for one in nets_of(net)] if net is not None else [0] * n
    return {"control_nets": n, "control_guess": takes_guess_mode(pipe), "control_types": types}


def control_state(traj: Any) -> dict[str, Any]:
    """The `control_run` trait for a run: its control per step, or {} for a run without one."""
    settings = traj.params.get("control") if traj is not None else None
    if not settings:
        return {"control_run": {}}
    steps = list(traj.steps)
    # a pipeline that runs its own loop (the generic path) does not show its residuals: no strengths
    unseen = bool(steps) and all(s.control_strength is None for s in steps)
    return {"control_run": {"strengths": [] if unseen else [float(s.control_strength or 0.0) for s in steps],
                            "unseen": unseen,
                            "scales": [s.control_scale if isinstance(s.control_scale, list) else
                                       float(s.control_scale or 0.0) for s in steps],
                            "start": settings["start"], "end": settings["end"], "model": settings["model"],
                            "guess_mode": bool(settings.get("guess_mode")), "mode": settings.get("mode")}}


class ControlPanel(t.HasTraits):
    """The Explorer's ControlNet traits and API (see the module docstring). Needs the Explorer's `pipe`,
    `_runner`, `_quiet`, `_set_quietly`, `_show_error`, `shown`, `shown_step` and `branch`."""

    control_scale = t.Float(1.0).tag(sync=True)
    control_start = t.Float(0.0).tag(sync=True)
    control_end = t.Float(1.0).tag(sync=True)
    control_guess_mode = t.Bool(False).tag(sync=True)  # diffusers' guess mode (core/controlnet.py)
    control_guess = t.Bool(False).tag(sync=True)  # the pipeline has a guess mode (SD's and SDXL's ControlNets)
    control_types = t.List(t.Int()).tag(sync=True)  # per slot: a union ControlNet's kinds of picture (0: not one)
    control_modes = t.List().tag(sync=True)  # per slot: the kind of picture chosen (control_mode), None: none yet
    use_control = t.Bool(False).tag(sync=True)  # Generate uses the control pictures
    control_nets = t.Int(0).tag(sync=True)  # the pipeline's ControlNets (several: a MultiControlNetModel)
    control_thumbs = t.List(t.Bytes()).tag(sync=True)  # one per ControlNet, b"" for an empty slot
    control_kinds = t.List(t.Unicode()).tag(sync=True)  # what each picture is: "sketch", "picture", "edges" or ""
    control_run = t.Dict().tag(sync=True)  # the shown run's control: strengths, scales, start, end, model
    # several ControlNets: each one's {"scale", "start", "end"} (one ControlNet: control_scale, _start, _end)
    control_units = t.List(t.Dict()).tag(sync=True)

    _control_sources: list = []  # per ControlNet: what control_from() was given (None: empty)
    _control_edges: list = []

    @t.observe("control_nets")
    def _control_slots(self, change: dict) -> None:
        """A slot per ControlNet of the pipeline: those of the nets it keeps stay, new ones are empty."""
        n = max(change["new"], 0)
        sources, edges = list(self._control_sources)[:n], list(self._control_edges)[:n]
        sources += [None] * (n - len(sources))
        edges += [False] * (n - len(edges))
        self._control_sources, self._control_edges = sources, edges
        self.control_thumbs = (list(self.control_thumbs) + [b""] * n)[:n]
        self.control_kinds = (list(self.control_kinds) + [""] * n)[:n]
        self.use_control = self.use_control and any(source is not None for source in sources)
        scale = own_control_scale(self.pipe)
        unit = {"scale": scale, "start": 0.0, "end": 1.0}
        self.control_units = (list(self.control_units) + [dict(unit) for _ in range(n)])[:n] if n > 1 else []

    @t.observe("control_types")
    def _control_types_changed(self, change: dict) -> None:
        """Another pipeline: each slot's kind kept where its ControlNet reads that many kinds, else none."""
        old = list(self.control_modes)
        self.control_modes = [old[j] if j < len(old) and old[j] is not None and old[j] < kinds else None
                              for j, kinds in enumerate(change["new"])]

    @t.validate("control_modes")
    def _check_control_modes(self, proposal: Any) -> list:
        """Each slot's kind of picture: None, or a number below its union ControlNet's kinds."""
        types, modes = list(self.control_types), list(proposal["value"])
        for j, mode in enumerate(modes):
            kinds = types[j] if j < len(types) else 0
            if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode < kinds):
                allowed = f"a number from 0 to {kinds - 1}" if kinds else "None (not a union ControlNet)"
                raise t.TraitError(f"control_modes[{j}] must be {allowed} or None, got {mode!r}")
        return modes

    @t.validate("control_units")
    def _check_control_units(self, proposal: Any) -> list:
        """Each ControlNet's scale and window, checked as the sliders' (named control_scale[j], ...)."""
        units = []
        for j, unit in enumerate(proposal["value"]):
            if not isinstance(unit, dict) or set(unit) != {"scale", "start", "end"}:
                raise t.TraitError(f"control_units[{j}] must be a dict of scale, start and end, got {unit!r}")
            start, end = check_window(unit["start"], unit["end"], f"[{j}]")
            units.append({"scale": check_control_scale(unit["scale"], f"control_scale[{j}]"), "start": start,
                          "end": end})
        return units

    @t.observe("control_units")
    def _control_units_changed(self, change: dict) -> None:
        """A ControlNet's scale dragged during a run steers it from its next step, as the one slider does."""
        scales = [unit["scale"] for unit in change["new"]]
        if self._quiet or not scales or scales == [unit["scale"] for unit in change["old"] or []]:
            return
        job = self._runner.current
        if job is not None and not job.done.is_set():
            job.control.set_control_scale(scales)

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

    # --- the control pictures -----------------------------------------------------------
    def control_from(self, source: Any = None, *, edges: bool = False, net: int | None = None) -> None:
        """Steer the next runs with a control picture (PIL image, uint8 array, file path, image bytes or a
        SketchPad, read at each Generate); edges=True uses the picture's edge map (core/edges.py).
        net: which ControlNet's picture, of a pipeline of several (0, the first, by default). None goes
        back to runs without control (with net=j: empties that ControlNet's slot only)."""
        self._set_control(source, edges, "source", net)

    def _slot(self, net: Any) -> int:
        """The picture slot `net` names (None: the first), checked against the pipeline's ControlNets."""
        if not control_slots(self.pipe):
            raise ValueError(NO_CONTROLNET)
        if net is None:
            return 0
        n = self.control_nets
        if isinstance(net, bool) or not isinstance(net, int) or not 0 <= net < n:
            raise ValueError(f"net must be a ControlNet's index from 0 to {n - 1} (this pipeline runs {n}), "
                             f"got {net!r}")
        return net

    def _set_control(self, source: Any, edges: Any, name: str, net: Any = None) -> None:
        """control_from, naming the picture `name` in messages (the page's upload: "control picture")."""
        if not isinstance(edges, bool):
            raise TypeError(f"edges must be True or False, got {edges!r}")
        if source is None and (net is None or not control_slots(self.pipe)):
            n = self.control_nets
            self._control_sources, self._control_edges = [None] * n, [False] * n
            self.control_thumbs, self.control_kinds, self.use_control = [b""] * n, [""] * n, False
            return
        j = self._slot(net)
        if source is None:
            self._fill(j, None, False, b"", "")
            self.use_control = self.use_control and any(one is not None for one in self._control_sources)
            return
        raw = source if isinstance(source, SketchPad) else start_picture.picture_of(source, name)
        picture = self._control_picture_of(raw, edges, name)
        kind = "edges" if edges else "sketch" if isinstance(source, SketchPad) else "picture"
        self._fill(j, raw, edges, start_picture.thumbnail(picture), kind)
        self.use_control = True

    def _fill(self, j: int, source: Any, edges: bool, thumb: bytes, kind: str) -> None:
        """Slot j holds `source` now: its thumbnail and kind in the state."""
        self._control_sources = [source if i == j else one for i, one in enumerate(self._control_sources)]
        self._control_edges = [edges if i == j else one for i, one in enumerate(self._control_edges)]
        self.control_thumbs = [thumb if i == j else one for i, one in enumerate(self.control_thumbs)]
        self.control_kinds = [kind if i == j else one for i, one in enumerate(self.control_kinds)]

    def control_pad(self, net: int | None = None, **options: Any) -> SketchPad:
        """A SketchPad for an outline (white on black) that the next runs are steered by: show it, draw the
        shape where you want it, press Generate. net: which ControlNet's picture (several); options:
        SketchPad's."""
        j = self._slot(net)
        options.setdefault("background", "black")
        options.setdefault("colors", ("white", "black"))
        pad = SketchPad(**start_picture.pad_size(self.pipe, options))
        pad.brush.value = max(1, pad.size[0] // 32)  # a pen about 2 pixels wide on the 64-pixel model
        self.control_from(pad, net=j)
        # each finished stroke shows in the Explorer's control thumbnail at once (the pad draws it first)
        pad.canvas.on_mouse_up(lambda *_: self._pad_drawn(pad))
        return pad

    def _pad_drawn(self, pad: SketchPad) -> None:
        for j, source in enumerate(self._control_sources):
            if source is pad:
                self.control_thumbs = [start_picture.thumbnail(pad.image) if i == j else one
                                       for i, one in enumerate(self.control_thumbs)]

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
        if not control_slots(self.pipe):
            raise ValueError(f"Explorer({', '.join(f'{k}=...' for k in given)}): {NO_CONTROLNET}")
        n = self.control_nets
        if n > 1 and any(isinstance(given.get(f"control_{key}"), (list, tuple)) for key in ("scale", "start", "end")):
            # several ControlNets, a value each: their own sliders (checked there, each named)
            per = {key: per_net(f"control_{key}", given.pop(f"control_{key}", unit), n)
                   for key, unit in self.control_units[0].items()}
            self.control_units = [{key: per[key][j] for key in per} for j in range(n)]
        if "control_mode" in given:  # a union ControlNet's kind of picture per slot, checked as trace checks it
            mode = given.pop("control_mode")
            self.control_modes = check_control_mode(mode, nets_of(controlnet_of(self.pipe))) \
                if controlnet_of(self.pipe) is not None else [check_no_mode(mode, type(self.pipe).__name__)]
        checks = {"control_scale": check_control_scale, "control_guess_mode": check_guess_mode}
        values = {key: checks[key](value) if key in checks else self._window_value(key, value)
                  for key, value in given.items() if key != "control_image"}
        if "control_image" in given:
            pictures = given["control_image"]
            if self.control_nets > 1 and isinstance(pictures, (list, tuple)) and len(pictures) == self.control_nets:
                for j, picture in enumerate(pictures):
                    self._set_control(picture, False, f"control_image[{j}]", j)
            else:
                self._set_control(pictures, False, "control_image")
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
            pictures = given["control_image"]
            given["control_image"] = [self._control_picture_of(p, False, f"control_image[{j}]") for j, p in
                                      enumerate(pictures)] if isinstance(pictures, (list, tuple)) and \
                self.control_nets > 1 else self._control_picture_of(pictures, False)
        elif self.use_control and control_slots(self.pipe) and \
                any(one is not None for one in self._control_sources):
            given["control_image"] = self._slot_pictures()
        if "control_image" not in given:
            return given  # control settings without a picture: nbd.trace says what is missing
        if params.get("height") is None and params.get("width") is None and params.get("image") is None:
            given["height"], given["width"] = adapter_for(self.pipe).default_size()
        settings = {"control_scale": self.control_scale, "control_start": self.control_start,
                    "control_end": self.control_end}
        if self.control_nets > 1 and len(self.control_units) == self.control_nets:  # each ControlNet's own
            settings = {f"control_{key}": [unit[key] for unit in self.control_units] for key in ("scale", "start", "end")}
        if any(self.control_types):  # a union ControlNet's kind of picture, each slot's
            modes = (list(self.control_modes) + [None] * self.control_nets)[:self.control_nets]
            settings["control_mode"] = modes if self.control_nets > 1 else modes[0]
        return {**settings, "control_guess_mode": self.control_guess_mode, **given}

    def _slot_pictures(self) -> Any:
        """The pictures of the slots for a Generate (a sketch pad read now, its thumbnail updated), or a
        ValueError naming an empty slot of a pipeline of several ControlNets."""
        pictures = []
        for j, (source, edges) in enumerate(zip(self._control_sources, self._control_edges)):
            if source is None:
                raise ValueError(f"control picture {j + 1} of {self.control_nets} is missing: this pipeline runs "
                                 f"{self.control_nets} ControlNets and each needs its picture (its slot's buttons, "
                                 f"or ex.control_from(picture, net={j}))")
            picture = self._control_picture_of(source, edges)
            if isinstance(source, SketchPad):
                self.control_thumbs = [start_picture.thumbnail(picture) if i == j else one
                                       for i, one in enumerate(self.control_thumbs)]
            pictures.append(picture)
        return pictures if self.control_nets > 1 else pictures[0]

    def controls_of_control(self, run: Any) -> dict[str, Any]:
        """The control sliders' values for a prepared run (what it runs with)."""
        plan = getattr(getattr(run, "controlnet", None), "plan", None)
        if plan is None:
            return {}
        values = {"control_scale": float(plan.scales[0][0]) if plan.scales else self.control_scale,
                  "control_start": plan.starts[0], "control_end": plan.ends[0], "control_guess_mode": plan.guess_mode}
        if plan.multi:
            values["control_units"] = [{"scale": float(plan.scales[0][j]) if plan.scales else 1.0, "start": start,
                                        "end": end} for j, (start, end) in enumerate(zip(plan.starts, plan.ends))]
        if plan.modes and any(mode is not None for mode in plan.modes):
            values["control_modes"] = list(plan.modes)
        return values

    def branch_control_changes(self, parent: Any, at: int) -> dict[str, Any]:
        """"Branch here": the control sliders that differ from the shown run at step `at`."""
        settings = parent.params.get("control") if parent is not None else None
        if not settings:
            return {}
        changes: dict[str, Any] = {}
        n = int(settings.get("nets") or 1)
        recorded = modes_of(settings, n)
        if any(self.control_types) and list(self.control_modes)[:n] != recorded:  # a union ControlNet's kind
            changes["control_mode"] = list(self.control_modes)[:n] if n > 1 else self.control_modes[0]
        if settings.get("nets") and len(self.control_units) == settings["nets"]:  # each ControlNet's sliders
            scales = settings["scale"][min(at + 1, len(settings["scale"]) - 1)] if settings["scale"] else []
            was = {"scale": scales, "start": settings["start"], "end": settings["end"]}
            for key in ("scale", "start", "end"):
                now = [unit[key] for unit in self.control_units]
                if now != list(was[key]):
                    changes[f"control_{key}"] = now
            if self.control_guess_mode != bool(settings.get("guess_mode")):
                changes["control_guess_mode"] = self.control_guess_mode
            return changes
        scales = settings["scale"]
        if scales and self.control_scale != _first(scales[min(at + 1, len(scales) - 1)]):
            changes["control_scale"] = self.control_scale
        for key in ("start", "end"):
            if getattr(self, f"control_{key}") != _first(settings[key]):
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


def _first(value: Any) -> Any:
    """A setting of a run: the first ControlNet's where a Multi-ControlNet run records one per ControlNet."""
    return value[0] if isinstance(value, list) else value


def control_handlers(ex: Any, step_of: Any) -> dict[str, Any]:
    """The page's ControlNet requests (browser.BrowserRequests)."""
    return {
        "control_upload": lambda c, b: ex._set_control(bytes(b[0]) if b else b"", bool(c.get("edges")),
                                                       "control picture", c.get("net")),
        "control_clear": lambda c, b: ex.control_from(None, net=c.get("net")),
        "no_control": lambda c, b: ex.without_control_from(step_of(c)),
    }
