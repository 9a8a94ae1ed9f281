"""Copying each step's tensors off the device without stalling it.

On a CPU a step's tensors are copied at once and the step is published (appended to the
trajectory, on_step called) as soon as it is made. On a CUDA device a synchronous `.cpu()` per
tensor would make the host wait for the GPU every step, so the queue of launched work runs dry
and the GPU idles while the host launches the next step. Instead each tensor is copied into
pinned host memory with a non-blocking copy, an event marks the end of the step's copies, and the
step is published once its event has completed, checked without waiting at the start of the next
step (and waited for at a pause and at the end of the run). Once published, a step's tensors
are moved to ordinary memory, so the pinned blocks go back to torch's caching host allocator and
a long history holds no page-locked memory. No step is dropped: they are published in order,
one or two steps after the GPU makes them.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

import torch

ASYNC_CUDA = True  # False: copy synchronously on CUDA too (benchmarks/gpu_overhead.py shows what that costs)
_TENSOR_FIELDS = ("latents", "pred_x0", "eps_cond", "eps_uncond", "eps_perturbed")


def copy_now(tensor: torch.Tensor) -> torch.Tensor:
    """Batch row 0, copied to the CPU in the model's dtype, synchronously."""
    return tensor[0].detach().to("cpu", copy=True)


class StepRecorder:
    """`copy(tensor)` for each recorded tensor, `add(step)` once a step is built, then
    `publish(append)` calls append(step) for every step whose copies are done, in order."""

    def __init__(self, device: torch.device):
        self.staged = device.type == "cuda" and ASYNC_CUDA and torch.cuda.is_available()
        self._pending: collections.deque = collections.deque()  # (event or None, step)
        self._last = time.perf_counter()

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        """Batch row 0 on the CPU in the model's dtype (on CUDA: pinned, filled when the step is published)."""
        if not self.staged or tensor.device.type != "cuda":
            return copy_now(tensor)
        row = tensor[0].detach()
        staged = torch.empty(row.shape, dtype=row.dtype, device="cpu", pin_memory=True)
        staged.copy_(row, non_blocking=True)
        return staged

    def number(self, value: torch.Tensor | None) -> Any:
        """A 0-d tensor as a float at once on a CPU; on CUDA a staged copy, a float once published."""
        if value is None:
            return None
        if not self.staged or value.device.type != "cuda":
            return float(value)
        staged = torch.empty((), dtype=value.dtype, device="cpu", pin_memory=True)
        return staged.copy_(value, non_blocking=True)

    def add(self, step: Any) -> None:
        self._pending.append((self._event() if self.staged else None, step))

    def _event(self) -> Any:
        """Marks the end of the step's copies on the current stream: query() / synchronize()."""
        event = torch.cuda.Event()
        event.record()
        return event

    def publish(self, append: Callable[[Any], None], wait: bool = False) -> None:
        """append(step) for each step whose copies are done (all of them with wait=True), oldest first."""
        while self._pending:
            event, step = self._pending[0]
            if event is not None:
                if not event.query():
                    if not wait:
                        return
                    event.synchronize()
                _unpin(step)
                # The step's wall time, as the GPU made it: the time between publications.
                now = time.perf_counter()
                step.seconds, self._last = now - self._last, now
            self._pending.popleft()
            append(step)

    def discard(self) -> None:
        """After an error: publish nothing more (the device may be in no state to finish the copies)."""
        self._pending.clear()


def _unpin(step: Any) -> None:
    """Move a published step's tensors to pageable memory (cheap: a host memcpy)."""
    for name in _TENSOR_FIELDS:
        if getattr(step, name) is not None:
            setattr(step, name, _pageable(getattr(step, name)))
    if step.extra_outputs:
        step.extra_outputs = tuple(_pageable(t) for t in step.extra_outputs)
    if isinstance(step.control_strength, torch.Tensor):
        step.control_strength = float(step.control_strength)


def _pageable(tensor: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(tensor, pin_memory=False).copy_(tensor)
