"""The Explorer's run switches: wait, stop, pause, resume and step the run that is going.

A mixin of the Explorer (widget.py): it needs the Explorer's `_runner` (runner.Runner), `_sync_lock`,
`status`, `_decoder` (the worker that decodes the held frame with the full VAE) and `_life`
(lifecycle.RunLifecycle). The run itself reads the switches through its RunControl (core/control.py).
"""
from __future__ import annotations


class RunSwitches:
    """ex.wait(), ex.stop(), ex.pause(), ex.resume(), ex.step() and ex.running."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no run is going or waiting; False when `timeout` seconds ran out first.

        A failed run does not raise here: its message is in `ex.error` (and shown in the widget).
        """
        return self._runner.wait(timeout)

    def stop(self) -> None:
        """Stop the running run after its current step (its trajectory keeps what was done)."""
        self._runner.stop()

    def pause(self) -> None:
        """Hold the run before its next step; the shown frame is then decoded with the full VAE."""
        job = self._runner.current
        if job is None or job.control.stopped:
            return
        with self._sync_lock:
            if job.done.is_set():
                return
            job.control.pause()
            self.status = "pausing"
        self._decoder.submit(self._life.publish_when_held, job, 0)

    def resume(self) -> None:
        job = self._runner.current
        if job is None:
            return
        with self._sync_lock:
            job.control.resume()
            job.context.clock.release()
            if not job.done.is_set():
                self.status = "running"

    def step(self) -> None:
        """Run one more step, then hold (pauses a running run after its next step)."""
        job = self._runner.current
        if job is None or job.control.stopped:
            return
        done = len(job.trajectory) if job.trajectory is not None else 0
        with self._sync_lock:
            if job.done.is_set():
                return
            job.control.step_once()
            job.context.clock.release()
            self.status = "pausing"
        self._decoder.submit(self._life.publish_when_held, job, done + 1)

    @property
    def running(self) -> bool:
        """Whether a run is going or waiting to start."""
        return self._runner.busy
