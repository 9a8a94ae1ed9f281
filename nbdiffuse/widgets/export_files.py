"""Files the Explorer writes for a run: the kinds, where each goes (never over an earlier file), and the writing.

No widget class here: the Explorer decides which run, step and view; these functions name and write the file.
"""
from __future__ import annotations

import os
import pathlib
import re
from typing import Any

from ..core.video import write_mp4

EXPORT_KINDS = ("png", "gif", "mp4", "html", "nbd")
SLUG_CHARS = 40  # at most this much of the prompt names a file
DOWNLOAD_MAX = 256 * 2**20  # bytes: a larger export stays on disk (the page would hold it all in memory)


def slug(prompt: Any) -> str:
    """'big-red-circle-on-the-left' from a prompt: lower case words joined by '-', cut at a word; 'run' if none."""
    words = re.findall(r"[^\W_]+", str(prompt or "").lower())
    out = ""
    for word in words:
        if len(out) + len(word) + 1 > SLUG_CHARS:
            break
        out = f"{out}-{word}" if out else word
    return out or (words[0][:SLUG_CHARS] if words else "run")


def export_path(traj: Any, kind: str, path: Any, folder: Any, step: int, view: str, number: int | None = None,
                start: int | None = None, stop: int | None = None) -> pathlib.Path:
    """Where an export goes: `path` as given, else a new file in `folder` with a readable name:
    the prompt's words, the run's number (#n in the run tree), the step (png) or step range (gif,
    mp4; left out for the whole run) and the view, e.g. big-red-circle-on-the-left_run3_step12_x0.png.
    A name already taken gets _2, _3, ...: an export never overwrites an earlier file.

    step: the step a png shows, from 0 (negative counts from the end); unused by the other kinds.
    """
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path or None, got {path!r}")
        return pathlib.Path(path).expanduser()
    folder = pathlib.Path(folder or os.getcwd()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"export_dir must be a folder, got {str(folder)!r} (a file)")
    n = len(traj)
    stem = slug(traj.params.get("prompt")) + (f"_run{number}" if number is not None else "")
    first, last = 0 if start is None else start, n if stop is None else stop
    if kind == "png":
        stem += f"_step{(step if step >= 0 else n + step) + 1}"
    elif kind in ("gif", "mp4") and isinstance(first, int) and isinstance(last, int) and (first, last) != (0, n):
        stem += f"_steps{first + 1}-{last}"  # write_export checks the range itself
    stem += f"_{view}" if kind in ("png", "gif", "mp4") else ""
    target = folder / f"{stem}.{kind}"
    copy = 2
    while target.exists():  # never overwrite an earlier export
        target = folder / f"{stem}_{copy}.{kind}"
        copy += 1
    return target


def read_for_download(path: Any, exported: list[str]) -> tuple[str, bytes]:
    """(file name, bytes) of a file the Explorer exported, for the page to download; refuses any other path."""
    if not isinstance(path, str) or path not in exported:
        raise ValueError(f"download: {path!r} is not one of the files this Explorer exported (ex.export_files)")
    file = pathlib.Path(path)
    if not file.is_file():
        raise ValueError(f"download: {path} is no longer there (moved or deleted); export it again")
    size = file.stat().st_size
    if size > DOWNLOAD_MAX:
        raise ValueError(f"download: {path} is {size / 2**20:.0f} MB, more than the {DOWNLOAD_MAX // 2**20} MB the "
                         "widget sends to the page; the file is on the kernel's machine at that path")
    return file.name, file.read_bytes()


def write_export(traj: Any, kind: str, target: pathlib.Path, *, step: int, view: str, start: int | None,
                 stop: int | None, fps: float, decoder: str | None, size: Any) -> None:
    """Write `traj` as `kind` to `target` (the arguments as Explorer.export takes them)."""
    if kind == "png":
        traj.to_png(target, k=step, view=view, decoder=decoder, size=size or "output")
    elif kind == "gif":
        traj.to_gif(target, view=view, fps=fps, decoder=decoder or "auto", size=size or 256, start=start, stop=stop)
    elif kind == "mp4":
        write_mp4(traj, target, view=view, fps=fps, start=start, stop=stop, decoder=decoder or "auto",
                  size=size or 256)
    elif kind == "html":
        traj.to_html(target, decoder=decoder or "auto", size=size or 256)
    else:
        traj.save(target)
