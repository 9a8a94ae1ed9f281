"""Compare two runs step by step: where do they part, and where does the composition lock in?"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .trajectory import Trajectory
from .views import VIEWS
from .validate import check_choice


@dataclass
class Comparison:
    """Two runs aligned by fraction of the run (they may have different step counts)."""

    a: Trajectory
    b: Trajectory
    pairs: list[tuple[int, int]]  # (step of a, step of b) shown together
    difference: list[float]  # mean |RGB difference| in [0, 1] of the approx frames of `view`, per pair
    view: str = "x0"  # what was compared: the x0 predictions, or the noisy latents x_t

    def __len__(self) -> int:
        return len(self.pairs)

    def heatmap(self, i: int = -1, view: str | None = None, size: int = 256) -> Image.Image:
        """Per-pixel |a - b| of pair i as a heat picture (black = same, bright = different); view None:
        the view compared."""
        view = self.view if view is None else view
        check_choice("view", view, VIEWS)
        ka, kb = self.pairs[i]
        diff = _rgb_diff(self.a, ka, self.b, kb, view).mean(-1)
        scale = max(float(diff.max()), 1e-6)
        t = np.clip(diff / scale, 0, 1)
        heat = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
        picture = Image.fromarray((heat * 255 + 0.5).astype(np.uint8))
        return picture.resize((size, size * picture.height // picture.width), Image.NEAREST)

    @property
    def locks_in_at(self) -> int:
        """The first pair after which the difference stays within 10% of its final value."""
        final = self.difference[-1]
        for i in range(len(self.difference)):
            if all(abs(d - final) <= 0.1 * max(final, 1e-3) + 1e-3 for d in self.difference[i:]):
                return i
        return len(self.difference) - 1


def _rgb_diff(a: Trajectory, ka: int, b: Trajectory, kb: int, view: str) -> np.ndarray:
    rgb_a = a.approx_decoder().rgb(a.latents_for(ka, view)).astype(np.float32) / 255
    rgb_b = b.approx_decoder().rgb(b.latents_for(kb, view)).astype(np.float32) / 255
    if rgb_a.shape != rgb_b.shape:
        raise ValueError(f"runs of different sizes cannot be compared: {rgb_a.shape[:2]} vs {rgb_b.shape[:2]}")
    return np.abs(rgb_a - rgb_b)


def shared_view(a: Trajectory, b: Trajectory) -> str:
    """The view two runs can be compared on: x0 when both recorded it, else x_t (a run of a pipeline
    outside the known families records x_t alone)."""
    return "x0" if a.has_x0 and b.has_x0 else "xt"


def compare(a: Trajectory, b: Trajectory, view: str | None = None) -> Comparison:
    """Align `a` and `b` by fraction of the run and measure their difference at each step.

    view: "x0" (the predicted clean images: where the composition settles) or "xt" (the noisy
    latents; the only view of runs that record x_t alone, core/generic.py); None: x0 when both
    runs recorded it, else x_t (shared_view)."""
    for name, traj in (("a", a), ("b", b)):
        if not isinstance(traj, Trajectory) or len(traj) == 0:
            raise ValueError(f"{name} must be a Trajectory with at least one step")
    view = shared_view(a, b) if view is None else check_choice("view", view, VIEWS)
    n = max(len(a), len(b))
    pairs = []
    for i in range(n):
        fraction = i / max(n - 1, 1)
        pairs.append((round(fraction * (len(a) - 1)), round(fraction * (len(b) - 1))))
    difference = [float(_rgb_diff(a, ka, b, kb, view).mean()) for ka, kb in pairs]
    return Comparison(a, b, pairs, difference, view)
