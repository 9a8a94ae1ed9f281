"""After an out-of-memory failure the failed run's tensors are freed, though the error is kept."""
import weakref

import torch

from nbdiffuse.core.device_memory import is_out_of_memory, release_after


def failing_run(hold):
    big = torch.zeros(1000)  # what a run holds when it fails
    hold.append(weakref.ref(big))
    raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_is_told_apart():
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(RuntimeError("CUDA out of memory. Tried ..."))
    assert not is_out_of_memory(ValueError("height=13 must be a multiple of 8"))


def test_release_after_frees_what_the_failed_run_held():
    hold = []
    try:
        failing_run(hold)
    except RuntimeError as exc:
        error = exc
    assert hold[0]() is not None  # the traceback's frame keeps it alive
    release_after(error)
    assert hold[0]() is None and "out of memory" in str(error)
    other = ValueError("not memory")
    release_after(other)  # anything else is left as it is
