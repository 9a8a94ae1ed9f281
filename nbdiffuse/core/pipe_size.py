"""The picture size a pipeline makes when given none, where its config does not say.

Most diffusers pipelines start `__call__` with `height = height or self.default_sample_size *
self.vae_scale_factor` (core/families/generic.py reads those). Some write the size as a number
there instead (ZImagePipeline: `height = height or 1024`) or as the parameter's default
(Kandinsky3Pipeline: `height: int | None = 1024`): spoken_size reads them from the pipeline's own
source and signature, once per class.
"""
from __future__ import annotations

import functools
import inspect
import re
from typing import Any

_LINE = re.compile(r"^\s*(height|width)\s*=\s*\1\s+or\s+(\d+)\s*$", re.MULTILINE)


@functools.lru_cache(maxsize=256)
def _spoken(cls: type) -> tuple[int, int] | None:
    try:
        source = inspect.getsource(cls.__call__)
    except (OSError, TypeError):
        return None
    found = {name: int(value) for name, value in _LINE.findall(source)}
    params = inspect.signature(cls.__call__).parameters
    for name in ("height", "width"):  # Kandinsky3Pipeline: `height: int | None = 1024` in the signature
        default = params[name].default if name in params else None
        if name not in found and isinstance(default, int) and not isinstance(default, bool) and default > 0:
            found[name] = default
    if "height" in found and "width" in found:
        return found["height"], found["width"]
    return None


def spoken_size(pipe: Any) -> tuple[int, int] | None:
    """(height, width) written as numbers in `pipe`'s __call__ (`height = height or 1024`, or a default), else None."""
    return _spoken(type(pipe))
