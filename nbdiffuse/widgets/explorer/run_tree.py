"""The run tree of an Explorer: nodes with thumbnails, what each branch changed, and branch jobs.

A branch records its parent's id and step in its params (core.branch does that), so the tree
is rebuilt from the runs alone: it survives save/load and works for runs loaded from files.

Bounds: an Explorer keeps at most `max_runs` runs (MAX_RUNS by default) in `ex.history`; when a
new run ends beyond that, the oldest runs go, never the newest nor the run it branched from.
Nothing goes silently: `ex.runs_dropped` (synced to the browser) counts them, and run labels
(#1, #2, ...) count every run the Explorer made, so they never shift; a branch whose parent went
says "parent not loaded or dropped". The per-run frame cache is an LRU of FRAME_CACHE_RUNS runs
(an evicted run's frames are re-encoded from its latents when it is loaded or compared again).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image

from ...core import branch as core_branch
from ...core.schedulers import scheduler_choices
from ..samplers import sampler_arg
from ...core.branch import BRANCH_CHANGES, prepare_branch
from ...core.capabilities import run_reason
from ...core.model_identity import quiet_in
from ...core.prompts import prepare_prompt
from ...core.validate import check_choice, check_step_at
from ..frames import encode_frame, frame_decoder
from .. import run_words

quiet_in(__name__)  # the Explorer shows a branch's model change in the run's notices: no warning from its thread
BRANCH_KEYS = tuple(k for k in BRANCH_CHANGES if k not in ("control", "on_step"))
THUMB_SIDE = 64  # px; thumbnails of larger runs are shrunk (the browser shows them at 64 px)
# Every run keeps every step's tensors on the CPU (x_t, x0, both noise predictions): for 30 steps
# about 0.5 MB with the embedded model, 4 MB for SD 1.5 at 512 px and 15 MB for SDXL at 1024 px (fp16).
MAX_RUNS = 50  # runs an Explorer keeps in ex.history unless Explorer(max_runs=...) says otherwise
FRAME_CACHE_RUNS = 16  # runs whose encoded live frames an Explorer keeps (least recently used go first)


def check_max_runs(value: Any) -> int | None:
    """max_runs: a whole number >= 1, or None for no bound (then ex.history is the user's to trim)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_runs must be a whole number >= 1 or None (no bound), got {value!r}")
    if value < 1:
        raise ValueError(f"max_runs must be >= 1 (runs kept in ex.history) or None (no bound), got {value}")
    return value


def runs_to_drop(history: list, max_runs: int | None, keep: Any = ()) -> list:
    """The oldest runs of `history` beyond `max_runs`, never one of `keep` (the shown run, the running one)."""
    if max_runs is None or len(history) <= max_runs:
        return []
    excess = len(history) - max_runs
    dropped = []
    for traj in history:
        if len(dropped) == excess:
            break
        if not any(traj is kept for kept in keep):
            dropped.append(traj)
    return dropped


class FrameCache:
    """Run id -> (x0 frames, xt frames, what drew them): an LRU bounded in runs, safe to use from several threads."""

    def __init__(self, max_runs: int = FRAME_CACHE_RUNS):
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
            raise ValueError(f"max_runs must be a whole number >= 1, got {max_runs!r}")
        self.max_runs = max_runs
        self._items: OrderedDict[str, tuple[list, list, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str) -> tuple[list, list, str] | None:
        with self._lock:
            frames = self._items.get(run_id)
            if frames is not None:
                self._items.move_to_end(run_id)
            return frames

    def put(self, run_id: str, frames: tuple[list, list, str]) -> None:
        with self._lock:
            self._items[run_id] = frames
            self._items.move_to_end(run_id)
            while len(self._items) > self.max_runs:
                self._items.popitem(last=False)

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._items.pop(run_id, None)

    def __contains__(self, run_id: object) -> bool:
        with self._lock:
            return run_id in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        return f"FrameCache({len(self)}/{self.max_runs} runs)"


def find_run(history: list, which: Any, name: str = "run") -> Any:
    """A run of `history` by index (negative counts from the end), id, or the Trajectory itself."""
    if isinstance(which, bool):
        raise TypeError(f"{name} must be a run index, a run id or a Trajectory, got {which!r}")
    if isinstance(which, int):
        if not -len(history) <= which < len(history) or not history:
            raise ValueError(f"{name} must be a run index in 0..{len(history) - 1}, got {which}")
        return history[which]
    if isinstance(which, str):
        for traj in history:
            if traj.id == which:
                return traj
        ids = ", ".join(t.id for t in history) or "none yet"
        raise ValueError(f"{name}={which!r} is not the id of a run of this Explorer; ids: {ids}")
    if any(which is traj for traj in history):
        return which
    raise TypeError(f"{name} must be a run index, a run id or a Trajectory of this Explorer, got "
                    f"{type(which).__name__}")


def check_branch(pipe: Any, parent: Any, at: Any, changes: dict) -> dict:
    """What the Explorer takes (the changes of BRANCH_KEYS, a scheduler by name), then everything
    core.branch refuses (core.branch.prepare_branch, the same check), before any model work."""
    unknown = sorted(set(changes) - set(BRANCH_KEYS))
    if unknown:
        raise TypeError(f"branch() got unknown change(s) {', '.join(unknown)}; allowed: {', '.join(BRANCH_KEYS)}")
    if not parent.capabilities["branch"]:  # a run of a pipeline watched through its step callback
        raise ValueError(run_reason(parent.params, "branching"))
    check_step_at(at, len(parent), " of the shown run")
    if "scheduler" in changes:
        check_choice("scheduler", changes["scheduler"], scheduler_choices(pipe))
        changes = dict(changes, scheduler=sampler_arg(pipe, changes["scheduler"]))
    prepare_branch(pipe, parent, at, **changes)
    return dict(changes)


class BranchRun:
    """core.branch shaped like a prepared core Run, so the Explorer's Runner can run, stop and pause it."""

    def __init__(self, pipe: Any, parent: Any, at: int, changes: dict, control: Any, on_step: Any):
        self.pipe, self.parent, self.at, self.changes = pipe, parent, at, changes
        self.control, self._on_step = control, on_step
        p = parent.params
        self.prompt = changes.get("prompt", p["prompt"])
        self.negative_prompt = changes.get("negative_prompt", p["negative_prompt"])
        self.seed = changes.get("seed", p["seed"])
        self.steps = int(changes.get("steps", p["steps"]))
        self.height, self.width = p["height"], p["width"]
        self.trajectory: Any = None
        # What the run will say about its prompts (core.branch collects the same), shown before its first step.
        self.notices = prepare_prompt(pipe, self.prompt)[1] + prepare_prompt(pipe, self.negative_prompt or "",
                                                                              "negative_prompt")[1]

    @property
    def total_steps(self) -> int:
        """Steps the branch's run will have (its parent's kept steps included), as Run.total_steps."""
        if self.trajectory is not None:
            return self.trajectory.total_steps
        return self.steps - int(self.parent.params.get("start_step") or 0)

    def execute(self) -> Any:
        self.trajectory = core_branch(self.pipe, self.parent, at=self.at, control=self.control,
                                      on_step=self._step, **self.changes)
        return self.trajectory

    def _step(self, traj: Any, step: Any) -> None:
        self.trajectory = traj
        self._on_step(traj, step)


def changes_from_controls(parent: Any, at: int, controls: dict) -> dict:
    """What "Branch here" changes: each control whose value differs from the shown run's."""
    p = parent.params
    changes = {}
    for key in ("prompt", "negative_prompt", "seed", "scheduler", "steps"):
        if key in controls and controls[key] != p[key]:
            changes[key] = controls[key]
    planned = p["guidance"]
    after = planned[at + 1] if at + 1 < len(planned) else planned[-1]
    if "guidance" in controls and float(controls["guidance"]) != float(after):
        changes["guidance"] = float(controls["guidance"])
    return changes


def describe_change(traj: Any, parent: Any | None, previous: Any | None = None, previous_label: str = "") -> str:
    """What sets a run apart, in words (run_words.differences).

    A branch: what differs from its parent after the branch point ("at step 12: guidance 5 → 8").
    A new run: what differs from `previous`, the run made before it ("new run, vs #3: seed 0 → 3"),
    or its prompt and settings when it is the first.
    """
    p = traj.params
    if p.get("parent") is None:
        if previous is None:
            return f"new run: {run_words.short(p['prompt'])} · {run_words.brief_settings(p)}"
        changes = run_words.change_words(run_words.differences(previous.params, p))
        return f"new run, vs {previous_label}: " + (changes or "same settings (the same picture)")
    at = p.get("branched_at")
    where = f"step {at + 1}" if isinstance(at, int) else "?"
    if parent is None:
        return f"branch at {where} (parent not loaded or dropped)"
    since = (at or 0) + 1
    changes = run_words.change_words(run_words.differences(parent.params, p, since=since))
    return f"at {where}: " + (changes or "same settings, replayed")


def thumbnail(traj: Any, decoder: str | None = None) -> bytes:
    """The run's last x0 (x_t for runs that record only x_t) as a small picture (b'' when it cannot be decoded).

    decoder None: what draws the run's frames (frames.frame_decoder: its saved pictures, the tiny
    decoder, the full VAE where cheap, else approx); "full" where the Explorer has that step decoded
    by the full VAE already (its final frame, kept in the run's decode cache): its true colours.
    """
    if len(traj) == 0:
        return b""
    decoder = decoder or frame_decoder(traj)
    try:
        picture = traj.image(-1, getattr(traj, "default_view", "x0"), decoder="full" if decoder == "saved" else decoder,
                             size="latent" if decoder == "approx" else "output")
    except ValueError:  # no approx decoder and no pipeline
        return b""
    if max(picture.size) > THUMB_SIDE:
        picture = picture.resize((THUMB_SIDE, THUMB_SIDE * picture.height // picture.width), Image.BILINEAR)
    return encode_frame(np.asarray(picture.convert("RGB")))


def run_nodes(history: list, numbers: dict | None = None) -> list[dict]:
    """One node per run for the history panel, parents before children, with depth for indenting.

    numbers: run id -> the run's number for its label (#n); by default its position in `history`.
    """
    numbers = numbers or {}
    by_id = {traj.id: traj for traj in history}
    depth: dict[str, int] = {}

    def depth_of(traj: Any) -> int:
        if traj.id not in depth:
            parent = by_id.get(traj.params.get("parent"))
            depth[traj.id] = 0 if parent is None or parent is traj else depth_of(parent) + 1
        return depth[traj.id]

    children: dict[Any, list] = {}
    for i, traj in enumerate(history):
        parent_id = traj.params.get("parent")
        children.setdefault(parent_id if parent_id in by_id else None, []).append(i)
    order: list[int] = []

    def walk(key: Any) -> None:
        for i in children.get(key, []):
            order.append(i)
            walk(history[i].id)

    walk(None)
    nodes = []
    label = lambda j: f"#{numbers.get(history[j].id, j + 1)}"  # noqa: E731
    for i in order:
        traj = history[i]
        parent = by_id.get(traj.params.get("parent"))
        previous = history[i - 1] if i > 0 else None  # the run made before this one
        nodes.append({
            "id": traj.id, "index": i, "parent": traj.params.get("parent"), "depth": depth_of(traj),
            "at": traj.params.get("branched_at"), "prompt": traj.params.get("prompt", ""),
            "steps": len(traj), "total": traj.total_steps, "stopped": bool(traj.stopped),
            "label": label(i), "changed": describe_change(traj, parent, previous, label(i - 1) if i else ""),
            "settings": run_words.settings_words(traj.params),
        })
    return nodes
