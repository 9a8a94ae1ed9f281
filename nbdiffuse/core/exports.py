"""Exports of a trajectory that need no nbdiffuse to view: animated GIF."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .validate import check_choice


def write_gif(traj, path: Any, view: str = "x0", fps: float = 8, decoder: str = "approx", size: Any = 256,
              hold_last: float = 1.0) -> None:
    """One frame per step; the last frame is held for `hold_last` seconds."""
    check_choice("view", view, ("x0", "xt"))
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 50:
        raise ValueError(f"fps must be a number in (0, 50], got {fps!r}")
    if len(traj) == 0:
        raise ValueError("this trajectory has no steps to export")
    frames = [traj.image(k, view=view, decoder=decoder, size=size).convert("RGB") for k in range(len(traj))]
    frame_ms = int(round(1000 / fps))
    durations = [frame_ms] * len(frames)
    durations[-1] = max(frame_ms, int(hold_last * 1000))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False)
