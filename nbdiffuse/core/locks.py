"""nbdiffuse's locks: one per pipeline (two runs never race on one model, and LoRA changes wait for the run
using it), and one for every tokenizer call."""
from __future__ import annotations

import threading
import weakref
from typing import Any

# Fast (Rust) tokenizers keep their padding and truncation settings on the shared tokenizer
# object, and every call sets them anew: two threads tokenizing at once can run with each
# other's settings (an unpadded negative prompt: "Sizes of tensors must match ... Expected size
# 2 but got size 77"). Every tokenizer call nbdiffuse makes, and every prompt encoding, holds
# this lock; encodings take milliseconds, so nobody waits long.
TOKENIZER_LOCK = threading.RLock()

_pipe_locks: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_pipe_locks_guard = threading.Lock()


def pipe_lock(pipe: Any) -> threading.RLock:
    """The lock every run (and every LoRA change) of `pipe` holds while it uses the model."""
    with _pipe_locks_guard:
        lock = _pipe_locks.get(pipe)
        if lock is None:
            lock = _pipe_locks[pipe] = threading.RLock()
        return lock
