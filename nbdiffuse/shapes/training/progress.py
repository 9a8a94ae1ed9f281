"""What a training run prints while it goes, and when it must stop (--max-minutes)."""
from __future__ import annotations

import datetime
import time
from typing import Optional

import numpy as np

LOG_EVERY = 25  # steps between log lines (and periodic checkpoint saves)
SAVE_RESERVE_S = 30  # stop this long before --max-minutes is up, to leave time for saving


def say(*parts) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}]", *parts, flush=True)


class Deadline:
    """--max-minutes, less the time saving takes; no deadline without it."""

    def __init__(self, max_minutes: Optional[float]):
        self.start = time.time()
        self.end = None if max_minutes is None else self.start + max_minutes * 60 - SAVE_RESERVE_S

    def passed(self) -> bool:
        return self.end is not None and time.time() > self.end


def log_losses(state: dict, stage: str, step: int, total: int, losses: list[float], seconds_per_step: float,
               lr: float) -> None:
    """Record the mean loss since the last line in state["losses"] (TRAINING.md's curve) and print it."""
    loss = float(np.mean(losses))
    state["losses"][stage].append([step, round(loss, 6)])
    eta = (total - step) * seconds_per_step / 60
    say(f"[{stage}] step {step}/{total} loss {loss:.4f} lr {lr:.1e} {seconds_per_step:.3f} s/step eta {eta:.1f} min")
