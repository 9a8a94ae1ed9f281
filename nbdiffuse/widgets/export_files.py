"""Files the Explorer writes for a run: the kinds, where each goes (never over an earlier file), and the writing.

No widget class here: the Explorer decides which run, step and view; these functions name and write the file.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

EXPORT_KINDS = ("png", "gif", "mp4", "html", "nbd")


def export_path(traj: Any, kind: str, path: Any, folder: Any, step: int, view: str) -> pathlib.Path:
    """Where an export goes: `path` as given, else a new file in `folder` named for the run, step (png) and view.

    step: the step a png shows, from 0 (negative counts from the end); unused by the other kinds.
    """
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path or None, got {path!r}")
        return pathlib.Path(path).expanduser()
    folder = pathlib.Path(folder or os.getcwd()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"export_dir must be a folder, got {str(folder)!r} (a file)")
    shown = f"_step{(step if step >= 0 else len(traj) + step) + 1}" if kind == "png" else ""
    stem = f"nbdiffuse_{traj.id}{shown}" + (f"_{view}" if kind in ("png", "gif", "mp4") else "")
    target = folder / f"{stem}.{kind}"
    n = 2
    while target.exists():  # never overwrite an earlier export
        target = folder / f"{stem}_{n}.{kind}"
        n += 1
    return target


def write_export(traj: Any, kind: str, target: pathlib.Path, *, step: int, view: str, start: int | None,
                 stop: int | None, fps: float, decoder: str | None, size: Any) -> None:
    """Write `traj` as `kind` to `target` (the arguments as Explorer.export takes them)."""
    if kind == "png":
        traj.to_png(target, k=step, view=view, decoder=decoder, size=size or "output")
    elif kind == "gif":
        traj.to_gif(target, view=view, fps=fps, decoder=decoder or "approx", size=size or 256, start=start, stop=stop)
    elif kind == "mp4":
        from ..core.video import write_mp4

        write_mp4(traj, target, view=view, fps=fps, start=start, stop=stop, decoder=decoder or "approx",
                  size=size or 256)
    elif kind == "html":
        traj.to_html(target, decoder=decoder or "approx", size=size or 256)
    else:
        traj.save(target)
