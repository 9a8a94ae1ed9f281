"""The caption side of a UNet training batch, made ahead in worker processes on a GPU machine.

Each step's batch (which pool images, what text for each, tokenized) depends only on
(seed, step), so it can be made anywhere and ahead of time. On a GPU the model step of the tiny
shapes UNet takes a few tens of milliseconds, while writing and tokenizing 1024 captions in
Python takes 50-90 ms: made inline, the captions would be the bottleneck. Workers make the
batches of the next steps while the GPU works; with no workers (the CPU presets) they are made
inline, the same batches either way.
"""

from __future__ import annotations

import collections
import multiprocessing
import time
from typing import Optional, Sequence

import numpy as np

from .render import noise_rates, training_text_at

# The colour pairs a bag of words cannot tell apart: a black object on white and a white one on
# black name the same two colours in swapped roles. Only the order of the words says which is the
# object; the shipped model drew about a third of such captions swapped at guidance 5.
SWAPPABLE_PAIRS = (("black", "white"), ("white", "black"))

CAPTION_DROPOUT = 0.10  # share of captions replaced by "" (the unconditional prompt for CFG)
OMIT_PROBABILITY = 0.25  # each attribute left out of a training caption with this probability


def swappable(captions: Sequence) -> np.ndarray:
    """Indices of the captions whose (object colour, background) is one of `SWAPPABLE_PAIRS`."""
    return np.array([i for i, c in enumerate(captions) if (c.color, c.background) in SWAPPABLE_PAIRS], dtype=np.int64)


def make_batch(captions: Sequence, tokenizer, seed: int, step: int, batch: int, noise=0.0,
               pair_share: float = 0.0, pairs: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices, token ids int64 (batch, model_max_length)) of UNet step `step`; `noise`:
    the share of each attribute named wrong, one for all or per attribute (`render.mislabel`);
    `pair_share`: the share of the batch drawn from `pairs` (default `swappable(captions)`)
    instead of the whole pool. With both 0 the batch is that of a run without the options."""
    rng = np.random.default_rng([seed, 2, step])
    index = rng.integers(len(captions), size=batch)
    if pair_share > 0:
        pairs = swappable(captions) if pairs is None else pairs
        if len(pairs):
            chosen = rng.random(batch) < pair_share
            index[chosen] = pairs[rng.integers(len(pairs), size=int(chosen.sum()))]
    rates = noise_rates(noise)
    texts = ["" if rng.random() < CAPTION_DROPOUT else training_text_at(captions[i], rng, OMIT_PROBABILITY, rates)
             for i in index]
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="np").input_ids.astype(np.int64)
    return index, ids


_worker: dict = {}
# A fork server imports this module (and so nbdiffuse, torch, transformers) once and forks each
# worker from it; spawned workers import it all again, each: 7.9 s vs 15.1 s to the first batch
# with 2 workers and 200k captions here. Spawn where there is no fork server (Windows).
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _start_worker(captions, tokenizer_dir: str) -> None:
    from .tokenizer import load_tokenizer

    _worker["captions"], _worker["tokenizer"] = captions, load_tokenizer(tokenizer_dir)


def _worker_batch(args) -> tuple[np.ndarray, np.ndarray]:
    seed, step, batch, noise, pair_share = args
    if pair_share > 0 and "pairs" not in _worker:  # found once per worker, and only for runs that draw them
        _worker["pairs"] = swappable(_worker["captions"])
    return make_batch(_worker["captions"], _worker["tokenizer"], seed, step, batch, noise, pair_share,
                      _worker.get("pairs"))


class TextBatches:
    """batches.get(step) -> make_batch(...) for that step; with workers > 0, the next `ahead`
    steps are being made meanwhile (a bounded queue: memory stays small however long the run)."""

    def __init__(self, captions: Sequence, tokenizer, tokenizer_dir, seed: int, batch: int, workers: int = 0,
                 ahead: int = 64, noise=0.0, pair_share: float = 0.0):
        self.captions, self.tokenizer, self.seed, self.batch, self.noise = captions, tokenizer, seed, batch, noise
        self.pair_share = pair_share
        self.pairs = swappable(captions) if pair_share > 0 and workers == 0 else None  # workers find their own
        self.ahead = ahead
        self._pool: Optional[multiprocessing.pool.Pool] = None
        self._queue: collections.deque = collections.deque()  # (step, AsyncResult)
        if workers > 0:
            context = multiprocessing.get_context(_START_METHOD)
            if _START_METHOD == "forkserver":
                context.set_forkserver_preload([__name__])
            self._pool = context.Pool(workers, initializer=_start_worker, initargs=(list(captions), str(tokenizer_dir)))

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if self._pool is None:
            return make_batch(self.captions, self.tokenizer, self.seed, step, self.batch, self.noise,
                              self.pair_share, self.pairs)
        self._fill(step)
        return self._queue.popleft()[1].get()

    def prefetch(self, step: int) -> None:
        """Start making the batches from `step` on and wait for the first (workers started and fed)."""
        if self._pool is not None:
            self._fill(step)
            self._queue[0][1].wait()

    def _fill(self, step: int) -> None:
        while self._queue and self._queue[0][0] != step:  # a jump (not expected): drop what was made ahead
            self._queue.popleft()
        next_step = self._queue[-1][0] + 1 if self._queue else step
        while len(self._queue) < self.ahead:
            job = (self.seed, next_step, self.batch, self.noise, self.pair_share)
            self._queue.append((next_step, self._pool.apply_async(_worker_batch, (job,))))
            next_step += 1

    def close(self, timeout: float = 60.0) -> None:
        """Let the batches already asked for finish, then shut the workers down.

        Pool.terminate() with tasks in flight can hang for minutes: a worker killed while it holds
        the task queue's lock leaves the pool's handler threads waiting on it (seen with fork-server
        workers). A graceful close takes the few batches still queued (tens of ms each); terminate
        stays as the fallback when they do not come within `timeout` seconds."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            deadline = time.monotonic() + timeout
            finished = True
            for _, result in self._queue:
                result.wait(max(0.0, deadline - time.monotonic()))
                finished = finished and result.ready()
            if finished:
                pool.close()
            else:
                pool.terminate()
            pool.join()
        self._queue.clear()
