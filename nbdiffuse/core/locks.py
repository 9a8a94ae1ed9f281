"""One lock per pipeline: two runs never race on one model, and LoRA changes wait for the run using it."""
from __future__ import annotations

import threading
import weakref
from typing import Any

_pipe_locks: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_pipe_locks_guard = threading.Lock()


def pipe_lock(pipe: Any) -> threading.RLock:
    """The lock every run (and every LoRA change) of `pipe` holds while it uses the model."""
    with _pipe_locks_guard:
        lock = _pipe_locks.get(pipe)
        if lock is None:
            lock = _pipe_locks[pipe] = threading.RLock()
        return lock
