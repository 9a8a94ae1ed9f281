"""Where models and LoRAs come from (a hub id, a folder, a file), and what loading them refuses with."""
from __future__ import annotations

import re

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class PipelineLoadError(ValueError):
    """A model could not be loaded; the message says what and how to fix it."""


class EmbeddedModelMissing(PipelineLoadError, FileNotFoundError):
    """The embedded shapes model is not in this installation."""


class LoraUnavailable(PipelineLoadError, ImportError):
    """lora= needs peft (diffusers' PEFT backend), which is not installed, or, for a LoRA with
    text-encoder weights, is older than the installed transformers accepts."""


def short_error(exc: Exception) -> str:
    """The first line of an exception's message (at most 300 characters), for one-line refusals."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
