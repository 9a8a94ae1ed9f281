"""Drop one harmless message of diffusers' loggers for the length of a call; everything else still shows.

diffusers logs notes that say nothing to a user of nbdiffuse in some of the calls nbdiffuse makes: "No LoRA
keys associated to CLIPTextModel" while loading a LoRA whose parts nbdiffuse checks itself (core/lora.py),
and "should be kept in float32: []" (an empty list) when a model is cast (core/controlnet_loading.py).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator


class _Without(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def without_message(text: str, *loggers: str) -> Iterator[None]:
    """While inside: the named loggers drop each record whose message contains `text`."""
    note, found = _Without(text), [logging.getLogger(name) for name in loggers]
    for logger in found:
        logger.addFilter(note)
    try:
        yield
    finally:
        for logger in found:
            logger.removeFilter(note)
