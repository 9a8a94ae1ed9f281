"""MP4 of a trajectory's steps, through imageio-ffmpeg when it is installed (an optional extra).

imageio-ffmpeg ships its own ffmpeg binary, so nothing else has to be on PATH; it is imported
only here, at call time, so nbdiffuse itself never needs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .exports import _steps_range
from .views import VIEWS
from .validate import check_choice

MP4_PACKAGE = "imageio-ffmpeg"


class VideoUnavailable(ImportError, ValueError):
    """MP4 export was asked for but imageio-ffmpeg is not installed."""


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_mp4(traj: Any, path: Any, view: str = "x0", fps: float = 8, start: int | None = None,
              stop: int | None = None, decoder: str = "auto", size: Any = 256) -> Path:
    """Steps [start, stop) of one view as an H.264 MP4 (yuv420p, so every player opens it)."""
    check_choice("view", view, VIEWS)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 60:
        raise ValueError(f"fps must be a number in (0, 60], got {fps!r}")

    steps = _steps_range(traj, start, stop)
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise VideoUnavailable(f"MP4 export needs the {MP4_PACKAGE} package: pip install {MP4_PACKAGE} "
                               "(or export a GIF, which needs nothing more)") from exc
    frames = [np.asarray(traj.image(k, view=view, decoder=decoder, size=size).convert("RGB")) for k in steps]
    # H.264 with yuv420p needs even sides; pad by one row/column of edge pixels rather than resample.
    h, w = frames[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    frames = [np.pad(f, pad, mode="edge") if (h % 2 or w % 2) else f for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (w + w % 2, h + h % 2), fps=float(fps), codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1, quality=8)
    writer.send(None)  # the generator starts ffmpeg on its first send
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return path
