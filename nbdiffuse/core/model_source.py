"""Where load_pipeline's `source` points: a local folder or a hub id, asked of the OS safely.

Asking the file system about a name the user typed can fail in ways that have nothing to do with
models: a name longer than the OS takes (OSError ENAMETOOLONG from a 5000-character string), a
"~user" whose home is unknown (RuntimeError), a folder one may not read (PermissionError). Each
becomes a PipelineLoadError (a ValueError) naming `source`, its value shortened, and what is allowed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .sources import PipelineLoadError
from .validate import show_value

HUB_ID_MAX = 96  # characters: huggingface_hub refuses longer repo ids (validate_repo_id)
ALLOWED = {"source": "None (the embedded model), an existing diffusers model folder (with model_index.json), "
                     f"a hub id like 'org/model' (at most {HUB_ID_MAX} characters) or a diffusers pipeline",
           "lora": f"a .safetensors file, a folder holding one, or a hub id like 'org/lora' (at most {HUB_ID_MAX} "
                   "characters)"}


def local_folder(source: Any, name: str = "source") -> Path | None:
    """The existing path `source` (load_pipeline's `name` argument) names, or None when nothing is there
    (then it may be a hub id)."""
    try:
        path = Path(source).expanduser()
        return path if path.exists() else None
    except (OSError, RuntimeError, ValueError) as exc:  # too long, unknown ~user, NUL byte, no permission
        if isinstance(exc, OSError) and not isinstance(exc, PermissionError) and len(str(source)) > HUB_ID_MAX:
            reason = f"the OS refuses a name this long ({len(str(source))} characters)"
        else:
            reason = f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        raise PipelineLoadError(f"{name}={show_value(os.fspath(source))} cannot be looked up as a file or folder "
                                f"({reason}); allowed: {ALLOWED[name]}") from None


def check_hub_id(value: str, name: str = "source") -> None:
    """A PipelineLoadError, before any network use, for a name too long to be a hub id."""
    if len(value) > HUB_ID_MAX:
        raise PipelineLoadError(f"{name}={show_value(value)} ({len(value)} characters) is neither an existing file or "
                                f"folder nor a hub id; allowed: {ALLOWED[name]}")
