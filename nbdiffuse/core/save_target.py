"""Where a file is about to be written: checked before anything is built or a temporary file made.

traj.save writes `<path>.tmp` and renames it over `path`, so that a failed save never leaves half a
file under the user's name. A target that can never take a file (an existing folder, a path under
a file, a name the OS refuses) is refused here first, as a ValueError naming the parameter, the
value and what is allowed, so no `<path>.tmp` is ever made for it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .validate import show_value

ALLOWED = "a file path such as 'run.nbd', in a folder that exists or can be made"


def check_save_path(path: Any, name: str = "path") -> Path:
    """`path` as a Path a file can be written to; ValueError (TypeError for a non-path) otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path, got {show_value(path)} ({type(path).__name__})")
    try:
        target = Path(path)
        if not target.name or target.name in (".", ".."):
            reason = "it names no file"
        elif "\0" in str(target):
            reason = "it holds a NUL character"
        elif target.is_dir():
            reason = "it is a folder"
        else:
            reason = next((f"{str(parent)!r} is a file, not a folder" for parent in target.parents
                           if parent.exists() and not parent.is_dir()), None)
    except (OSError, ValueError) as exc:  # a name too long, a folder one may not look into
        reason = f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
    if reason is not None:
        raise ValueError(f"{name}={show_value(os.fspath(path))} cannot be written ({reason}); allowed: {ALLOWED}")
    return target
