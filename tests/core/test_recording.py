"""Steps recorded with deferred copies (the CUDA path) are published whole, in order, none dropped.

No GPU in CI: the deferral is driven by stand-in events that complete a few queries after
they are recorded, so the publishing logic of the CUDA path runs on the CPU with a real model.
"""
import importlib
import threading

import torch

import nbdiffuse as nbd
from nbdiffuse.core.recording import StepRecorder

trace_module = importlib.import_module("nbdiffuse.core.trace")  # the module (nbdiffuse.core.trace is the function)
run_module = importlib.import_module("nbdiffuse.core.run")  # the step loop, which records the steps


class SlowEvent:
    """Completes after `lag` queries, or at once when synchronized."""

    def __init__(self, log, lag=2):
        self.log, self.left = log, lag

    def query(self):
        self.left -= 1
        return self.left < 0

    def synchronize(self):
        self.log.append("wait")
        self.left = -1


def deferred(monkeypatch, log, lag=2):
    class Deferred(StepRecorder):
        def __init__(self, device):
            super().__init__(device)
            self.staged = True

        def _event(self):
            return SlowEvent(log, lag)

    monkeypatch.setattr(run_module, "StepRecorder", Deferred)


def test_deferred_steps_are_published_in_order_and_equal_a_plain_run(sd_pipe, monkeypatch):
    plain = nbd.trace(sd_pipe, "a red circle", steps=6, seed=3)
    log, seen = [], []
    deferred(monkeypatch, log)

    def on_step(traj, step):
        seen.append((step.index, len(traj)))

    traj = nbd.trace(sd_pipe, "a red circle", steps=6, seed=3, on_step=on_step)
    assert seen == [(k, k + 1) for k in range(6)]  # each step once, in order, as the trajectory's newest
    assert "wait" in log  # the last steps were waited for at the end, not dropped
    for a, b in zip(plain, traj):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.pred_x0, b.pred_x0)
        assert torch.equal(a.eps_uncond, b.eps_uncond) and a.timestep == b.timestep and b.seconds > 0


def run_paused_at(pipe, pause_at, steps, log):
    """Run `pipe` for `steps`, pausing when step `pause_at` is published; once it holds, note how
    many steps the trajectory has and stop. Returns (trajectory, [that count])."""
    control = nbd.RunControl()
    counts = []

    def on_step(traj, step):
        if step.index == pause_at:
            control.pause()
            log.append("paused")

    def watch():
        control.wait_until_waiting(30)
        counts.append(len(run.trajectory))
        control.stop()

    run = trace_module.prepare(pipe, "a red circle", steps=steps, seed=1, control=control, on_step=on_step)
    watcher = threading.Thread(target=watch)
    watcher.start()
    traj = run.execute()
    watcher.join(30)
    return traj, counts


def test_a_pause_publishes_every_step_made_before_it_waits(sd_pipe, monkeypatch):
    log = []
    deferred(monkeypatch, log, lag=4)  # steps 3.. are made before step 2 is published (and pauses)
    traj, counts = run_paused_at(sd_pipe, 2, 8, log)
    # Paused when step 2 was published, with later steps already made: the pause waits for their
    # copies and publishes them all, so the paused view shows the newest step made.
    assert len(traj) > 3 and counts == [len(traj)] and traj.stopped
    assert log.index("paused") < log.index("wait")


def test_generic_runs_defer_their_copies_the_same_way(generic_pipe, monkeypatch):
    """A pipeline watched through its step callback (core/generic.py) records through the same
    deferred copies: every step once, in order, bit-equal to a plain run; a pause waits for them."""
    generic_module = importlib.import_module("nbdiffuse.core.generic")
    plain = nbd.trace(generic_pipe, "a red circle", steps=5, seed=2)
    log, seen = [], []
    deferred(monkeypatch, log)  # patches the run module's StepRecorder: the generic module gets the same
    monkeypatch.setattr(generic_module, "StepRecorder", run_module.StepRecorder)
    traj = nbd.trace(generic_pipe, "a red circle", steps=5, seed=2, on_step=lambda tr, s: seen.append((s.index, len(tr))))
    assert seen == [(k, k + 1) for k in range(5)] and "wait" in log and not traj.stopped
    assert [s.timestep for s in traj] == [s.timestep for s in plain]
    for a, b in zip(plain, traj):
        assert torch.equal(a.latents, b.latents) and b.seconds > 0

    log.clear()
    traj, counts = run_paused_at(generic_pipe, 1, 6, log)
    assert counts == [len(traj)] and len(traj) >= 2 and traj.stopped
    assert log.index("paused") < log.index("wait")
