"""Out-of-memory failures: telling them apart, and giving the memory back after one."""
from __future__ import annotations

import ctypes
import functools
import gc
import sys
import traceback

import torch


def is_out_of_memory(exc: BaseException) -> bool:
    """A host MemoryError or a device allocator's "out of memory" (CUDA, MPS)."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "out of memory" in str(exc).lower())


def release_after(exc: BaseException) -> None:
    """After an out-of-memory failure, free what the failed run held so the next run can use it:
    the traceback's frames keep its tensors alive, and torch's caching allocator keeps freed
    device blocks reserved for this process (other notebooks on the GPU cannot have them)."""
    if not is_out_of_memory(exc):
        return
    if exc.__traceback__ is not None:
        traceback.clear_frames(exc.__traceback__)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def return_freed_host_memory() -> bool:
    """Hand memory that Python and torch have freed back to the operating system (glibc's malloc_trim).

    Why: glibc keeps freed heap memory for reuse, and a run's small step tensors, frames and
    objects, freed when the Explorer drops an old run, sit between the model's freed activations:
    the holes stay mapped. benchmarks/explorer_memory.py (embedded model, 10-step runs,
    max_runs=50): without trimming the process grew +10.3% and +15.4% from run 10 to run 100 in two
    runs (0.80-0.86 MB per kept run); trimming after each run: +2.8% and +3.9% (0.36-0.45 MB per kept
    run, flat once runs are dropped). Dask's worker documentation recommends the same call for the
    same "unmanaged memory". Returns whether memory was handed back; False where there is no glibc
    (macOS, Windows, musl).
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once; None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        found = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    found.argtypes, found.restype = [ctypes.c_size_t], ctypes.c_int
    return found
