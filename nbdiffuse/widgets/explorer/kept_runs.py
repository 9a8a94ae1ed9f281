"""What an Explorer keeps beside its runs: their frames, thumbnails and labels, and when old runs go.

`ex.history` (a plain list the user may hold and trim) stays the one list of runs; this object
keeps what is derived from it, so that the widget class holds only its traits and public API:

- frames: run id -> (x0 frames, xt frames, what drew them), an LRU of run_tree.FRAME_CACHE_RUNS runs;
- thumbnails: (run id, steps) -> JPEG, for the runs in history at their current length;
- labels: run id -> n of the label #n, counting every run made (dropped ones included), so labels never shift.
"""
from __future__ import annotations

from typing import Any

from ..frames import VIEWS, frame_decoder, steps_frames
from . import run_tree


class KeptRuns:
    """The per-run frame cache, thumbnails and labels of one Explorer (see the module docstring)."""

    def __init__(self) -> None:
        self.frames = run_tree.FrameCache(run_tree.FRAME_CACHE_RUNS)
        self.thumbs: dict[tuple[str, int], bytes] = {}
        self.numbers: dict[str, int] = {}
        self.made = 0

    def frames_of(self, traj: Any, preview: str, upto: int | None = None) -> tuple[list, list, str]:
        """A run's per-step frames (x0, xt) and what drew them (frames.frame_decoder): kept from its
        live stream, else made once here (with `preview`, the Explorer's choice of live decoder)."""
        n = len(traj) if upto is None else upto
        known = self.frames.get(traj.id)
        if known is None or len(known[0]) < n:
            decoder = frame_decoder(traj, preview)
            every = upto is None or upto >= len(traj) or known is not None
            per_step = steps_frames(traj, range(len(traj) if every else n), VIEWS, decoder)
            made = ([f[0] for f in per_step], [f[1] for f in per_step], decoder)
            if not every:
                return made
            known = made
            self.frames.put(traj.id, known)
        return list(known[0][:n]), list(known[1][:n]), known[2]

    def drop_old(self, history: list, max_runs: int | None, keep: tuple) -> int:
        """Keep `history` within max_runs: the oldest runs go, never one of `keep` or their parents.

        Changes `history` in place (the user's ex.history stays the same list); returns how many went."""
        keep = tuple(traj for traj in keep if traj is not None)
        parents = {traj.params.get("parent") for traj in keep} - {None}
        keep += tuple(traj for traj in history if traj.id in parents)  # the tree shows where a branch came from
        gone = run_tree.runs_to_drop(history, max_runs, keep)
        if not gone:
            return 0
        history[:] = [traj for traj in history if not any(traj is g for g in gone)]
        for traj in gone:
            self.frames.discard(traj.id)
        return len(gone)

    def label(self, traj: Any) -> str:
        """#n: the run's number among every run this Explorer made (dropped ones included)."""
        if traj.id not in self.numbers:
            self.made += 1
            self.numbers[traj.id] = self.made
        return f"#{self.numbers[traj.id]}"

    def keep_full_thumbnail(self, traj: Any, n: int) -> None:
        """The final frame is decoded by the full VAE already: its true colours for the thumbnail, at no cost."""
        self.thumbs[(traj.id, n)] = run_tree.thumbnail(traj, decoder="full")

    def tree(self, history: list) -> tuple[list[dict], list[bytes]]:
        """The history panel's nodes and thumbnails (by history index); forgets what left `history`."""
        thumbs, kept = [], {}
        for traj in history:
            key = (traj.id, len(traj))
            kept[key] = self.thumbs[key] if key in self.thumbs else run_tree.thumbnail(traj)
            thumbs.append(kept[key])
            self.label(traj)
        self.thumbs = kept  # only the runs still in history, at their current length
        self.numbers = {traj.id: self.numbers[traj.id] for traj in history}
        return run_tree.run_nodes(history, self.numbers), thumbs
