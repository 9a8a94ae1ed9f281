"""A run's life as the Explorer shows it: start, live, held (pause, single step), end; and a kept run shown again.

The widget's state (its traits) is what a saved notebook keeps, so each stage writes it in one
batch under the widget's sync lock: at the start (the new run's figures, a branch's inherited
frames), when the run holds (every recorded step, the last one decoded by the full VAE), at the end
(the same, plus the run tree), and when a kept run is loaded. Between those, frames travel as paced
custom messages (live_run.LiveRun). This object also owns what is on screen: the run streaming now
(`live`) and the run shown once it ended or was loaded (`shown_traj`).

It writes the Explorer's traits and uses these of its parts: `_sync_lock`, `hold_sync`,
`_assign`, `_show_error`, `_quietly` (trait writes that must not steer a run), `_kept`
(kept_runs.KeptRuns), `history`, `max_runs` and `preview`.
"""
from __future__ import annotations

import contextlib
import math
import time
import uuid
from typing import Any

from ...core.device_memory import release_after, return_freed_host_memory
from ...core.overlay_maps import EMPTY as OVERLAYS_EMPTY, mask_map, overlay_state
from ..frames import VIEWS, full_frames
from ..live_run import LiveRun
from ..plain_words import capabilities_state
from ..runner import Job
from .control_panel import control_state
from .pag_panel import pag_state


def full_frames_state(traj: Any, k: int) -> dict[str, bytes]:
    """The `full_frames` trait for step k of `traj`: "k:view" -> the full VAE's picture (views it has)."""
    return {key: png for key, png in zip((f"{k}:{v}" for v in VIEWS), full_frames(traj, k)) if png}


class RunLifecycle:
    """Start, hold, end and reload of runs in one Explorer's traits (see the module docstring)."""

    def __init__(self, explorer: Any):
        self.ex = explorer
        self.live: LiveRun | None = None  # the run streaming now (or last streamed)
        self.shown_traj: Any = None  # the run on screen once it ended or was loaded

    def ack(self, run: Any, seq: Any) -> None:
        """The browser painted live frame `seq` of `run`: the pacer may send the next one."""
        live = self.live
        if live is not None and live.run_id == run:
            live.pacer.ack(seq)

    # --- a run, in the worker thread (or the caller's, for foreground runs) ----------------
    def execute(self, job: Job) -> None:
        ex, live, run = self.ex, job.context, job.run
        prefix = live.prefix or ([], [])
        with ex._sync_lock:
            self.live = live
            self.shown_traj = None
            with ex.hold_sync():
                ex._assign({"run_id": live.run_id, "shown_run": "", "status": "running", "n_steps": 0,
                            "total_steps": run.total_steps, "its": 0.0, "seconds": 0.0, "guidances": [], "control_run": {},
                            "pag_used": [],
                            # A branch shows its parent's steps up to the branch point until its own arrive.
                            "frames_x0": list(prefix[0]), "frames_xt": list(prefix[1]), "full_frames": {},
                            "frame": -1, "image_size": [run.width, run.height], "error": "", "error_details": "",
                            "notices": list(getattr(run, "notices", [])),  # known before any model work
                            **OVERLAYS_EMPTY,  # the last run's maps must not lie over this run's frames
                            **mask_map(run)})  # an inpainting run's mask shows from its first step
                ex._assign(capabilities_state(run.pipe))
        failure: BaseException | None = None
        live.clock.start()
        try:
            run.execute()
        except BaseException as exc:  # any failure shows in the widget; the kernel and the next run live on
            failure = exc
        self.finish(job, live, failure)
        if isinstance(failure, KeyboardInterrupt) and not job.background:
            raise failure

    def finish(self, job: Job, live: LiveRun, failure: BaseException | None) -> None:
        ex, traj = self.ex, job.trajectory
        if traj is not None:
            live.adopt(traj)
        live.pacer.close()  # from here on the state carries everything
        if live.stream is not None:
            live.stream.close()
        # The run's picture and "done" go out first; the steps the live view skipped follow (fill_skipped).
        state, problem = self.full_state(live, traj, make_skipped=False)
        problems = [p for p in (failure, problem) if p is not None]
        n = state["n_steps"]
        if traj is not None:
            ex._kept.frames.put(traj.id, (state["frames_x0"], state["frames_xt"], state["frames_decoder"]))
            self.drop_old_runs(traj)
            with contextlib.suppress(Exception):  # a thumbnail must never turn a finished run into a failure
                if n and state["full_frames"].get(f"{n - 1}:{traj.default_view}"):
                    ex._kept.keep_full_thumbnail(traj, n)
                self.refresh_runs()
        with ex._sync_lock:
            with ex.hold_sync():
                ex._assign(state)
                ex.frame = -1
                if traj is not None:
                    self.shown_traj = traj
                    ex.shown_run = traj.id
                if problems and not isinstance(problems[0], KeyboardInterrupt):
                    ex._show_error(problems[0], n if problems[0] is failure else None, job.run.total_steps)
                    ex.status = "error"
                else:
                    ex.status = "stopped" if (traj is None or traj.stopped) and n < job.run.total_steps else "done"
        for exc in problems:  # the message is out: now free what an out-of-memory run held
            release_after(exc)
        if traj is not None and n:
            self.fill_skipped(live, traj, n)
        # What this run and the runs it pushed out freed goes back to the system (~1 ms); without it the
        # process grew +15.4% over 100 runs of the embedded model, +3.9% with it (device_memory).
        return_freed_host_memory()

    def publish_when_held(self, job: Job, at_least: int) -> None:
        """Once the run holds (pause or single step) with `at_least` steps, show its state in full."""
        control = job.control
        while not job.done.is_set() and not control.stopped and control.paused:
            if not control.wait_until_waiting(0.2):
                continue
            traj = job.trajectory
            if control.waiting and traj is not None and len(traj) >= at_least:
                self.publish_paused(job)
                return
            time.sleep(0.005)  # the loop was just released by step_once and has not run yet

    def publish_paused(self, job: Job) -> None:
        ex = self.ex
        state, problem = self.full_state(job.context, job.trajectory)
        state.pop("pag_scale", None)  # a held run: the slider is what its next step asks (moved while held, too)
        with ex._sync_lock:
            if not (job.control.paused and job.control.waiting) or job.done.is_set():
                return  # resumed or stopped meanwhile
            job.context.clock.hold()
            with ex.hold_sync():
                ex._assign(state)
                ex.status = "paused"
            if problem is not None:
                ex._show_error(problem)

    def fill_skipped(self, live: LiveRun, traj: Any, n: int) -> None:
        """The frames of the steps a finished run's live view skipped, made once its picture is out.

        On the embedded model a step's tiny-decoder frames cost ~6% of its 27 ms guided step on a 2-core
        CPU; made before "done" they delayed a 30-step run's picture by ~40 ms (benchmarks/explorer_overhead.py).
        Until they arrive (tens of ms) the page shows the nearest earlier frame for such a step."""
        ex, stream, state = self.ex, live.stream, {}
        try:
            if stream is not None and stream.missing(n):
                state["frames_x0"], state["frames_xt"] = stream.snapshot(n)
                ex._kept.frames.put(traj.id, (state["frames_x0"], state["frames_xt"], stream.decoder))
            state.update(overlay_state(traj))  # shown on demand: they follow the picture too
        except Exception:  # e.g. out of memory: the page keeps showing the nearest earlier frames
            pass
        with ex._sync_lock:
            if self.shown_traj is traj and state:
                with ex.hold_sync():
                    ex._assign(state)

    def full_state(self, live: LiveRun, traj: Any, make_skipped: bool = True) -> tuple[dict, BaseException | None]:
        """Trait values showing every recorded step, the last one decoded by the full VAE; and what failed.
        make_skipped=False leaves the steps the live view skipped without frames and the overlays out
        (fill_skipped makes them)."""
        n = len(traj) if traj is not None else 0
        state: dict[str, Any] = {"frames_x0": [], "frames_xt": [], "frames_decoder": "approx", "full_frames": {},
                                 "n_steps": n,
                                 "guidances": list(traj.guidances) if traj is not None else [],
                                 "notices": traj.notices if traj is not None else self.ex.notices,
                                 "its": live.its(), "seconds": live.seconds(), **control_state(traj),
                                 **pag_state(traj)}
        if traj is not None and n:  # what the run turned out to give (packed latents show at its first step)
            state.update(capabilities_state(traj))
        try:
            if live.stream is not None:
                state["frames_x0"], state["frames_xt"] = live.stream.snapshot(n, make=make_skipped)
                state["frames_decoder"] = live.stream.decoder
            if n:
                state["full_frames"] = full_frames_state(traj, n - 1)
            if make_skipped:
                state.update(overlay_state(traj))
        except Exception as exc:  # e.g. the VAE runs out of memory: keep the approx frames, say so
            return state, exc
        return state, None

    # --- the kept runs ------------------------------------------------------------------
    def drop_old_runs(self, *keep: Any) -> None:
        """Keep ex.history within max_runs: the oldest runs go, never one of `keep`, the shown run or their parents."""
        ex = self.ex
        gone = ex._kept.drop_old(ex.history, ex.max_runs, (*keep, self.shown_traj))
        if gone:
            with ex._sync_lock:
                ex.runs_dropped += gone

    def refresh_runs(self) -> None:
        ex = self.ex
        nodes, thumbs = ex._kept.tree(list(ex.history))
        with ex._sync_lock, ex.hold_sync():
            ex.runs = nodes
            ex.run_thumbs = thumbs

    def show(self, traj: Any) -> BaseException | None:
        """Put kept run `traj` on screen (load_run; no run is going); returns what failed to decode, if anything."""
        ex = self.ex
        frames_x0, frames_xt, decoder = ex._kept.frames_of(traj, ex.preview)
        full: dict = {}
        problem = None
        if traj.pipe is not None and len(traj):
            try:
                full = full_frames_state(traj, len(traj) - 1)
            except Exception as exc:  # keep the lossy frames, say what failed
                problem = exc
        with ex._sync_lock:
            self.shown_traj = traj
            self.live = None
            with ex._quietly(), ex.hold_sync():
                ex._assign(saved_run_state(traj, ex, (frames_x0, frames_xt, full, decoder)))
                ex.error = ex.error_details = ""
                ex._assign(capabilities_state(traj))
        return problem


def saved_run_state(traj: Any, ex: Any, frames: tuple) -> dict[str, Any]:
    """The traits showing a kept run: its figures, `frames` (x0, xt, full_frames, what drew x0 and xt) and settings."""
    p = traj.params
    seconds = round(sum(s.seconds for s in traj), 3)  # its wall time was not kept: its model time
    state: dict[str, Any] = {
        "run_id": uuid.uuid4().hex[:12], "shown_run": traj.id, "n_steps": len(traj), "total_steps": traj.total_steps,
        "guidances": list(traj.guidances), "frames_x0": frames[0], "frames_xt": frames[1], "full_frames": frames[2],
        "frames_decoder": frames[3], "image_size": [int(p["width"]), int(p["height"])], "seconds": seconds,
        "its": round(len(traj) / seconds, 2) if seconds > 0 else 0.0, "notices": traj.notices, "guidance_note": "",
        "frame": -1, "prompt": p["prompt"], "negative_prompt": p["negative_prompt"] or "", "seed": int(p["seed"]),
        "steps": int(p["steps"]), **control_state(traj), **pag_state(traj),
    }
    if p["scheduler"] in ex.scheduler_options:
        state["scheduler"] = p["scheduler"]
    if traj.guidances:
        state["guidance_max"] = float(max(ex.guidance_max, math.ceil(max(traj.guidances))))
        state["guidance"] = float(traj.guidances[-1])
    state["status"] = "stopped" if traj.stopped and len(traj) < traj.total_steps else "done"
    state.update(overlay_state(traj))
    return state
