"""Long prompts said once, in a line (text no encoding can write is refused by validate.check_encodable).

- Long prompts: nbdiffuse does what diffusers does, it truncates them to what the text encoder
  reads (77 CLIP tokens), and prompts.prepare_prompt puts one short notice on the run. No bound is
  set on the length, as a diffusers user expects none. diffusers also logs the whole dropped text
  ("The following part of your input was truncated ...": a 1 MB prompt wrote ~1 MB into the
  notebook cell) and transformers logs that the sequence is longer than the model's maximum. Both
  are dropped here, only for the known families' pipelines (which get the notice) and only while
  nbdiffuse itself encodes (the thread holds locks.TOKENIZER_LOCK): a pipe(...) call of the
  user's own still logs as diffusers does.
"""
from __future__ import annotations

import logging
from typing import Any

from .locks import TOKENIZER_LOCK

_LONG_PROMPT_LOGS = ("The following part of your input was truncated because",
                     "Token indices sequence length is longer than the specified maximum")
_TOKENIZER_LOGGER = "transformers.tokenization_utils_base"


class _WhileNbdiffuseEncodes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not TOKENIZER_LOCK._is_owned():  # not an encoding of nbdiffuse's own: diffusers' log stays
            return True
        message = record.getMessage()
        return not any(text in message for text in _LONG_PROMPT_LOGS)


_FILTER = _WhileNbdiffuseEncodes()


def quiet_long_prompt_logs(pipe: Any) -> None:
    """Drop the long-prompt logs of `pipe`'s modules (its class's and those it inherits encode_prompt from)
    and of transformers' tokenizers while nbdiffuse encodes."""
    for name in {cls.__module__ for cls in type(pipe).__mro__ if cls is not object} | {_TOKENIZER_LOGGER}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
