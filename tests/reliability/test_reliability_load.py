"""Load: 100 short runs in a row through one Explorer hold memory and threads.

Resident memory (VmRSS) after 100 runs may exceed what it was after a warm-up of 10 runs by at
most 5%. With the tiny pipeline a run's own data is small (3 steps of 4x8x8 latents), so the
RSS bound alone would only catch leaks of a few hundred KB per run; the test therefore also
counts what a leak would be made of: Trajectory objects alive, frames cached, thumbnails kept,
threads. Those must stay at their documented bounds whatever the allocator does.
"""
from __future__ import annotations

import gc
import threading
import time

import pytest

from nbdiffuse.core import Trajectory
from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.explorer import run_tree
from nbdiffuse.widgets.headless import HeadlessFrontend
from reliability_helpers import WAIT, new_threads

RUNS, WARM_UP, STEPS = 100, 10, 3


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def alive(kind) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


@pytest.mark.slow
def test_100_runs_hold_memory_threads_and_caches(pipe):
    gc.collect()
    before = set(threading.enumerate())
    trajectories_before = alive(Trajectory)
    ex = Explorer(pipe, steps=STEPS)
    fe = HeadlessFrontend(ex)
    most_threads = 0
    began = time.monotonic()

    def one(i):
        nonlocal most_threads
        if i % 10 == 9:  # now and then a branch, so the run tree has parents to lose
            ex.branch(1, guidance=2.0 + i % 3)
        elif i % 2:
            fe.set(prompt=f"run {i}", seed=i)  # the browser's Generate
            fe.click("generate")
        else:
            ex.generate(prompt=f"run {i}", seed=i)
        assert ex.wait(WAIT) and ex.status == "done", (i, ex.status, ex.error)
        most_threads = max(most_threads, len(new_threads(before)))
        # The stand-in browser keeps every message it got; a real one does not: empty it.
        with fe._lock:
            fe.customs.clear()
            fe.frames.clear()
            fe.log.clear()

    try:
        for i in range(WARM_UP):
            one(i)
        gc.collect()
        warm = rss_kib()
        for i in range(WARM_UP, RUNS):
            one(i)
        gc.collect()
        end = rss_kib()
        growth = (end - warm) / warm
        held = alive(Trajectory) - trajectories_before
        print(f"\n{RUNS} runs in {time.monotonic() - began:.1f} s; VmRSS after warm-up {warm} KiB, "
              f"after {RUNS} runs {end} KiB: {100 * growth:+.2f}%; threads of ours at most {most_threads}; "
              f"history {len(ex.history)}, dropped {ex.runs_dropped}, frame cache {len(ex._frames)}, "
              f"Trajectory objects alive {held}")
        assert growth <= 0.05, f"resident memory grew {100 * growth:.1f}% over {RUNS - WARM_UP} runs"
        assert len(ex.history) == run_tree.MAX_RUNS and ex.runs_dropped == RUNS - run_tree.MAX_RUNS
        assert len(fe.state["runs"]) == len(fe.state["run_thumbs"]) == len(ex._thumbs) == run_tree.MAX_RUNS
        assert len(ex._frames) <= run_tree.FRAME_CACHE_RUNS
        assert held <= run_tree.MAX_RUNS, f"{held} Trajectory objects alive for {len(ex.history)} runs kept"
        assert most_threads <= 3  # the run worker, the decoder, the stand-in browser's acks
    finally:
        ex.close()
        fe.close()
    assert new_threads(before) == [], "the thread count must return to its baseline"
