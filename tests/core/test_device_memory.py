"""After an out-of-memory failure the failed run's tensors are freed, though the error is kept; freed host
memory goes back to the system."""
import os
import sys
import weakref

import pytest
import torch

from nbdiffuse.core.device_memory import is_out_of_memory, release_after, return_freed_host_memory


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


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_freed_host_memory_goes_back_to_the_system():
    # ~120 MB of 2 KB blocks (malloc, not Python's small-object pool), one in 64 kept: the kept
    # ones pin the heap, so glibc keeps the freed pages mapped until they are trimmed.
    blocks = [bytearray(2048) for _ in range(60_000)]
    kept = blocks[::64]
    del blocks
    before = _resident_mib()
    assert return_freed_host_memory() is True
    assert before - _resident_mib() > 60, "the freed blocks' pages must leave the process"
    assert len(kept) == 938
