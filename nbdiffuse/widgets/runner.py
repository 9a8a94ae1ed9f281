"""Background runs for widgets: one worker thread, one run at a time, the newest request wins.

Generate during a run *replaces* it: the running job is stopped after its current step (its
trajectory keeps the steps done and is marked stopped), a job still waiting to start is
dropped, and the new job starts as soon as the old one has let go of the pipeline. Replacing
is what a user exploring prompts means by pressing Generate again; a queue would make them
wait for pictures they no longer want. Two runs never race on one pipeline: jobs run one
after another in this runner, and nbdiffuse.core holds a per-pipeline lock besides.
The teaching sweeps run here too, one Task for all their cells, submitted with replace=False:
running a sweep again while it runs is refused, not a replacement.

At interpreter exit (a kernel restart or shutdown) every runner stops its run and its worker
thread ends (within EXIT_SECONDS): a daemon thread still inside torch when Python finalizes
aborts the process ("terminate called without an active exception"), so the kernel would
die instead of exiting.
"""
from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any, Callable

from ..core import RunControl

IDLE_SECONDS = 30.0  # the worker thread waits this long for another job before it ends
EXIT_SECONDS = 5.0  # at interpreter exit, wait at most this long in all for runs to stop (Jupyter kills after 5 s)
_runners: "weakref.WeakSet[Runner]" = weakref.WeakSet()


class Task:
    """What the Runner needs of a request: its RunControl (stop() ends the work after its current
    step), whether it runs in the background, and what came of it (done, cancelled). A teaching
    sweep submits one Task for all its cells; the Explorer submits Jobs."""

    def __init__(self, control: RunControl, background: bool = True, context: Any = None):
        self.control, self.background = control, background
        self.context = context  # whatever the owner needs per run (the Explorer: its live stream)
        self.done = threading.Event()
        self.cancelled = False  # replaced before it started: never ran


class Job(Task):
    """One requested run: the prepared core Run, its RunControl and what came of it."""

    def __init__(self, run: Any, control: RunControl, background: bool = True, context: Any = None):
        super().__init__(control, background, context)
        self.run = run

    @property
    def trajectory(self) -> Any:
        return self.run.trajectory

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else "cancelled" if self.cancelled else "pending/running"
        return f"Job({self.run.prompt!r}, steps={self.run.steps}, {state})"


class Runner:
    """Runs jobs (Tasks) one at a time; `execute(job)` does the work and must not raise."""

    def __init__(self, execute: Callable[[Any], None], name: str = "nbdiffuse-run"):
        self._execute, self._name = execute, name
        self._cond = threading.Condition()
        self._current: Task | None = None
        self._pending: Task | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        _runners.add(self)

    # --- requests ---------------------------------------------------------------------
    def submit(self, job: Task, replace: bool = True) -> None:
        """Start `job`, replacing any running or waiting one; foreground jobs run in this thread.
        replace=False refuses (RuntimeError) while a job runs or waits instead."""
        with self._cond:
            if self._closed:
                raise RuntimeError("this widget was closed; create a new one to generate")
            if self._thread is threading.current_thread():
                raise RuntimeError("generate() cannot be called from inside a run (e.g. from on_step)")
            if not replace and (self._current is not None or self._pending is not None):
                raise RuntimeError("a run is still going; call stop() or wait() first")
            self._replace_locked()
            if job.background:
                self._pending = job
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return
            self._cond.wait_for(lambda: self._current is None)  # the replaced run ends after its current step
            if self._closed:
                raise RuntimeError("this widget was closed; create a new one to generate")
            self._current = job
        self._run(job)

    def _run(self, job: Task) -> None:
        """Execute the current job; whatever happens, free the turn and wake the waiters."""
        try:
            self._execute(job)
        finally:
            with self._cond:
                self._current = None
                job.done.set()
                self._cond.notify_all()

    def stop(self) -> None:
        """Stop the running job after its current step and drop the waiting one."""
        with self._cond:
            self._replace_locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits; False when `timeout` (seconds) ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._current is None and self._pending is None, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop everything and end the worker thread; False if it did not end within `timeout`."""
        self._shut()
        return self._join(timeout)

    def _shut(self) -> None:
        with self._cond:
            self._closed = True
            self._replace_locked()

    def _join(self, timeout: float | None) -> bool:
        worker = self._thread
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            return not worker.is_alive()
        return True

    # --- state ------------------------------------------------------------------------
    @property
    def current(self) -> Task | None:
        with self._cond:
            return self._current

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._current is not None or self._pending is not None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    # --- worker -----------------------------------------------------------------------
    def _replace_locked(self) -> None:
        if self._pending is not None:
            self._pending.cancelled = True
            self._pending.done.set()
            self._pending = None
        if self._current is not None:
            self._current.control.stop()  # also releases a paused run
        self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                # Stay a while for the next job: torch's per-thread caches stay warm (a fresh
                # thread per run measured ~2% slower on the tiny test model), then exit when idle.
                self._cond.wait_for(lambda: self._closed or (self._pending is not None and self._current is None),
                                    IDLE_SECONDS)
                if self._pending is None:
                    self._thread = None if self._thread is threading.current_thread() else self._thread
                    self._cond.notify_all()
                    return
                if self._current is not None:
                    continue  # a foreground run still holds its turn
                job, self._pending = self._pending, None
                self._current = job
            self._run(job)


@atexit.register
def _stop_all_at_exit(timeout: float | None = None) -> None:
    """Stop every runner's run first (one may wait for another's pipeline lock), then let the threads end."""
    runners = list(_runners)
    for runner in runners:
        runner._shut()
    deadline = time.monotonic() + (EXIT_SECONDS if timeout is None else timeout)
    for runner in runners:
        runner._join(max(0.0, deadline - time.monotonic()))
