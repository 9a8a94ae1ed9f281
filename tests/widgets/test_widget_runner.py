"""Runner: one run at a time; a new request replaces the running one; no thread outlives its work."""
from __future__ import annotations

import threading

import pytest

from nbdiffuse.core import RunControl
from nbdiffuse.widgets.runner import Job, Runner


class SlowRun:
    """A run that takes `steps` turns of the RunControl, like the core loop does between steps."""

    def __init__(self, name, steps, log, started=None):
        self.name, self.steps, self.log, self.started = name, steps, log, started
        self.prompt, self.trajectory = name, None

    def execute(self, control):
        self.log.append(("start", self.name))
        if self.started is not None:
            self.started.set()
        done = 0
        while done < self.steps and control._wait_turn():
            threading.Event().wait(0.002)
            done += 1
        self.log.append(("end", self.name, done))


def make_runner(log):
    active = []

    def execute(job):
        assert not active, "two runs at once"
        active.append(job)
        try:
            job.run.execute(job.control)
        finally:
            active.pop()

    return Runner(execute)


def job(name, steps, log, background=True, started=None):
    return Job(SlowRun(name, steps, log, started), RunControl(), background)


def test_worker_thread_is_reused_for_the_next_job():
    log, threads = [], []
    runner = Runner(lambda j: (threads.append(threading.current_thread()), j.run.execute(j.control)))
    for name in ("a", "b"):
        runner.submit(job(name, 2, log))
        assert runner.wait(30)
    assert threads[0] is threads[1]
    assert runner.close(10) and not threads[0].is_alive()


def test_new_job_replaces_the_running_one_and_drops_the_waiting_one():
    log = []
    runner = make_runner(log)
    started = threading.Event()
    first = job("first", 10_000, log, started=started)
    runner.submit(first)
    assert started.wait(10)
    second = job("second", 10_000, log)
    third = job("third", 3, log)
    runner.submit(second)
    runner.submit(third)
    assert runner.wait(30)
    assert second.cancelled and second.done.is_set()
    assert [entry[:2] for entry in log] == [("start", "first"), ("end", "first"), ("start", "third"), ("end", "third")]
    assert log[1][2] < 10_000 and log[3][2] == 3
    assert runner.close(10)


def test_foreground_job_runs_in_the_calling_thread_after_the_background_one_stops():
    log = []
    seen = []
    runner = Runner(lambda j: (seen.append(threading.current_thread()), j.run.execute(j.control)))
    started = threading.Event()
    runner.submit(job("bg", 10_000, log, started=started))
    assert started.wait(10)
    runner.submit(job("fg", 3, log, background=False))
    assert seen[-1] is threading.current_thread()
    assert log[-1] == ("end", "fg", 3) and log[1][:2] == ("end", "bg")
    assert runner.close(10)


def test_worker_thread_ends_when_idle_and_after_close(monkeypatch):
    from nbdiffuse.widgets import runner as runner_module

    monkeypatch.setattr(runner_module, "IDLE_SECONDS", 0.05)
    log = []
    runner = make_runner(log)
    runner.submit(job("a", 3, log))
    assert runner.wait(30)
    thread = runner.thread
    if thread is not None:
        thread.join(10)
        assert not thread.is_alive()
    started = threading.Event()
    runner.submit(job("b", 10_000, log, started=started))
    assert started.wait(10)
    assert runner.close(30)
    assert log[-1][:2] == ("end", "b")
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(job("c", 1, log))


def test_stop_releases_a_paused_job():
    log = []
    runner = make_runner(log)
    control = RunControl()
    control.pause()
    paused = Job(SlowRun("p", 5, log), control)
    runner.submit(paused)
    assert control.wait_until_waiting(10)
    runner.stop()
    assert runner.wait(10)
    assert log[-1] == ("end", "p", 0)
    assert runner.close(10)


def test_a_job_submitted_without_replace_is_refused_while_another_runs():
    """The teaching sweeps' way: running again while a run goes is refused, the running job untouched."""
    log, started = [], threading.Event()
    runner = make_runner(log)
    long_job = job("long", 10_000, log, started=started)
    runner.submit(long_job, replace=False)
    assert started.wait(10)
    with pytest.raises(RuntimeError, match="still going"):
        runner.submit(job("refused", 3, log), replace=False)
    assert not long_job.control.stopped and runner.current is long_job
    runner.stop()
    assert runner.wait(30)
    runner.submit(job("after", 3, log), replace=False)
    assert runner.wait(30) and log[-1] == ("end", "after", 3)
    assert [entry[1] for entry in log] == ["long", "long", "after", "after"]
    assert runner.close(10)
