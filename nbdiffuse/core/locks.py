"""nbdiffuse's locks: one per model (two runs never race on one denoiser, however many pipelines share it, and
LoRA changes wait for the run using it), and one for every tokenizer call."""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Iterator

# Fast (Rust) tokenizers keep their padding and truncation settings on the shared tokenizer
# object, and every call sets them anew: two threads tokenizing at once can run with each
# other's settings (an unpadded negative prompt: "Sizes of tensors must match ... Expected size
# 2 but got size 77"). Every tokenizer call nbdiffuse makes, and every prompt encoding, holds
# this lock; encodings take milliseconds, so nobody waits long.
TOKENIZER_LOCK = threading.RLock()

_pipe_locks: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_pipe_locks_guard = threading.Lock()


def pipe_lock(pipe: Any) -> threading.RLock:
    """The lock every run (and every LoRA change) of `pipe` holds while it uses the model: one per denoiser, so
    pipelines that share it (`from_pipe`: a PAG pipeline's perturbed layers, a LoRA, are set on the shared
    UNet while a run uses it) take turns too."""
    from .families.base import denoiser_of

    key = denoiser_of(pipe)
    key = pipe if key is None else key
    with _pipe_locks_guard:
        try:
            lock = _pipe_locks.get(key)
        except TypeError:  # not weakly referenceable: the pipeline's own
            key = pipe
            lock = _pipe_locks.get(key)
        if lock is None:
            lock = _pipe_locks[key] = threading.RLock()
        return lock


TURN_POLL = 0.05  # s between looks at the run's stop while it waits for the model


@contextlib.contextmanager
def model_turn(pipe: Any, control: Any = None) -> Iterator[bool]:
    """Hold pipe_lock(pipe) for a run; yields True once held, or False when the run's `control` was
    stopped while it waited (the lock is then not held).

    Why: another run of the same model may hold it for long (a paused run holds it until it goes on).
    A run waiting behind it must still stop when asked: B.stop(); B.wait(5) was False, and closing
    the Explorer took its full 30 s timeout."""
    lock = pipe_lock(pipe)
    while not lock.acquire(timeout=TURN_POLL):
        if control is not None and control.stopped:
            yield False
            return
    try:
        yield True
    finally:
        lock.release()
