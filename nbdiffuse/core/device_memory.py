"""Out-of-memory failures: telling them apart, and giving the memory back after one."""
from __future__ import annotations

import gc
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
