"""What the Explorer costs on top of a bare pipeline run, and what it sends.

Runs the same 30-step generation (same guidance; the final latents are checked equal) five ways,
interleaved so that all see the same machine load: a bare `pipe(...)` (its steps and its picture:
the goal's yardstick) in the Explorer's own worker thread, between its runs; the same bare
`pipe(...)` in the main thread, as a notebook cell runs it; a bare `nbd.trace` (no picture); through
an Explorer (frames encoded, paced and sent to a headless frontend that acks like the browser) in
its worker thread, as a notebook runs it; and through the Explorer in the bare trace's own thread
(generate(background=False), the mode offered for Colab). An Explorer run counts until its status
turns "done" (its picture and state are out); the frames of the steps its live view skipped follow,
and the time to them is printed too. It prints the median ratios with 95% bootstrap intervals (goal
<= 1.05 on a CPU), the messages and bytes per second a run sends, and the size of live frames.

Why the yardstick runs in the Explorer's thread: two threads of one process running the very same
trace differ in step time by up to 30%, and keep that difference for the life of the process (one
process's main thread and four worker threads: 0.89, 0.98, 1.00, 1.16 and 1.20 of one another; 0.93
to 1.03 with the process pinned to one CPU; other amounts in the next process). Against a yardstick
in another thread, the ratio carries that thread's luck: this is what made the Explorer's steps look
4-6% slower than a bare trace's with its per-step hook a no-op (the previous note). In one thread,
step times (30 steps, 16 rounds): the Explorer with a no-op hook 1.007 of a bare trace's, with only
the loop 0.995, with its live frames made beside the steps 1.027. The main-thread figure is printed
as well, with that thread's luck (the same bare pipe(...) in the main thread / in the Explorer's).

Measured 2026-12-06/07 (embedded model, 1 torch thread, 50 rounds, 2-core CPU, a quiet hour: single
pairs 0.91-1.27): Explorer / bare pipe(...) in its thread 1.036, 1.032, 1.038 and 1.042 in four runs
(intervals 1.030-1.051, 1.022-1.050, 1.032-1.054, 1.036-1.052); against the pipe(...) in the main
thread 1.028, 1.029, 1.040 and 1.057 (that thread's luck 1.009, 1.008, 1.004, 0.993); to the last
skipped frame 1.082-1.092; at an even machine speed 1.033-1.037; generate(background=False) against
a bare pipe(...) in its own thread 1.049. In a busy hour an hour earlier (single pairs 0.66-1.67)
the same code gave 1.106, 1.077 and 1.068 (intervals 1.058-1.141, 1.008-1.134, 0.987-1.172), and
the even-speed figure still 1.036.

Measured 2026-12-06, with the yardstick in the main thread: 1.052, 1.084 and 1.083.

Earlier figures, against a bare trace:

(embedded model, 1 torch thread, 40 rounds, 2026-11-24, the bare trace ~1.1 s):
through the Explorer 1.043 (1.040-1.048) and 1.035 (1.027-1.045); in the bare trace's thread
1.041 (1.038-1.043) and 1.040 (1.035-1.045), its steps 1.005 and 1.003 of the bare trace's; with
--bare-thread 1.030 (1.025-1.034) and 1.038 (1.031-1.043). The Explorer's own work is ~39 ms a
run: the final full-VAE frame ~20 ms, both views' live frames and their message ~1 ms a step.

On a busy machine whose CPU speed drifts (the same bare trace taking 1.3 to 2.0 s from one run to
the next, single pairs ranging from 0.71 to 1.8) the plain medians wandered from 1.029 to 1.079
between invocations, intervals that did not overlap. So the script also measures the ratio at an
even machine speed, in two parts that each cancel the drift:
- each run's wall time over its own denoising steps' time (Step.seconds: model and sampler; the
  same work on both sides), Explorer over bare: what the Explorer adds around the steps;
- single model steps timed right after the Explorer's per-step work (frames decoded, encoded,
  sent, the ack arriving meanwhile) or right after nothing, alternating: whether that work slows
  the steps themselves, which the first part cannot see (an effect slower than a step would
  average out here).
Their product held still on the busy machine too: 1.037-1.039 in every run (e.g. 1.036 x 1.003,
intervals 1.035-1.036 and 1.000-1.006), and 1.040, 1.035 and 1.039 on the quiet one.

Where the model runs matters as well. In the main thread (a notebook cell's), glibc's main arena
made the same bare trace 2-3% slower than in a worker thread on the busy machine (0.969 and 0.981;
0.996 with MALLOC_ARENA_MAX=1, where every thread shares one arena), and the Explorer's steps in
its worker thread ran 0.99-1.04 of the steps in the main thread from one invocation to the next.
The Explorer in the bare trace's own thread has neither: its steps take 1.002-1.005 of the bare
trace's, so that ratio is the cost of the Explorer's own work. --bare-thread runs the bare trace,
the main-thread bare pipe(...) and the Explorer's foreground side in a lasting worker thread instead
of this one. Ruled out as causes of a
slower step: the GIL (the run thread waits for it 0.1-0.6% of its steps' time), the acks' thread
(a bare trace with a second thread woken 5 ms after each step: 1.004, 150 pairs), and the frames'
allocations (a trace that decodes, encodes and sends both views each step in a worker thread of
its own: steps 1.003 of a bare one there).

Also printed: the fastest quarter of each side's runs, process CPU time, and the Explorer's own
work timed inside its runs (set-up, per-step hooks, final frame and state).

    python benchmarks/explorer_overhead.py [--pairs 40] [--steps 30] [--threads 1] [--bare-thread]

Ratios, not timed assertions: nothing here fails on a slow machine.
"""
from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbdiffuse as nbd  # noqa: E402
from nbdiffuse.core.families import family_for  # noqa: E402
from nbdiffuse.widgets.frames import LIVE_MAX_BYTES, encode_live, frame_decoder, full_frames, step_frames  # noqa: E402
from nbdiffuse.widgets.headless import HeadlessFrontend  # noqa: E402
from nbdiffuse.widgets.explorer.lifecycle import RunLifecycle  # noqa: E402
from nbdiffuse.widgets.live_run import LiveRun  # noqa: E402
from nbdiffuse.widgets.runner import Task  # noqa: E402
from nbdiffuse.core import RunControl  # noqa: E402


class OwnWork:
    """Times, inside each Explorer run, what the Explorer adds to the model's loop.

    A run is RunLifecycle.execute (the Explorer's runner calls it): state set-up, run.execute() (the traced loop, which calls the
    per-step hook LiveRun.on_step), then the final frame and state. own = execute - loop + hooks;
    the rest (loop - hooks) is what a bare trace does.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[float, float]] = []  # (own work, the loop without the hooks), seconds
        self._hooks = 0.0
        on_step, execute = LiveRun.on_step, RunLifecycle.execute
        meter = self

        def timed_on_step(live, traj, step):
            began = time.perf_counter()
            try:
                on_step(live, traj, step)
            finally:
                meter._hooks += time.perf_counter() - began

        def timed_execute(lifecycle, job):
            loop = [0.0]
            run_execute = job.run.execute

            def timed_loop():
                began = time.perf_counter()
                try:
                    return run_execute()
                finally:
                    loop[0] = time.perf_counter() - began
            job.run.execute = timed_loop
            meter._hooks = 0.0
            began = time.perf_counter()
            execute(lifecycle, job)
            whole = time.perf_counter() - began
            meter.runs.append((whole - loop[0] + meter._hooks, loop[0] - meter._hooks))

        LiveRun.on_step, RunLifecycle.execute = timed_on_step, timed_execute
        self._restore = (on_step, execute)

    def close(self) -> None:
        LiveRun.on_step, RunLifecycle.execute = self._restore


class InExplorerThread:
    """Runs a plain call in the Explorer's own worker thread (its Runner), between its runs: the
    yardstick then shares the Explorer's thread and its luck (see the module docstring)."""

    class Call(Task):
        def __init__(self, call):
            super().__init__(RunControl(), background=True, context=call)
            self.result, self.error = None, None

    def __init__(self) -> None:
        """Before the Explorer is made (its Runner keeps the execute it is given); set `.ex` after."""
        self.ex = None
        execute = RunLifecycle.execute

        def execute_or_call(lifecycle, job):
            if not isinstance(job, InExplorerThread.Call):
                return execute(lifecycle, job)
            try:
                job.result = job.context()
            except BaseException as exc:  # handed back to the caller
                job.error = exc

        RunLifecycle.execute = execute_or_call
        self._restore = execute

    def __call__(self, call):
        job = self.Call(call)
        self.ex._runner.submit(job, replace=False)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        RunLifecycle.execute = self._restore


def median_interval(values: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 95% bootstrap interval of the median: how far this run's median could be from the machine's."""
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(np.asarray(values), (rounds, len(values))), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def step_interference(pipe, ex, traj, prompt: str, guidance: float, rounds: int) -> list[float]:
    """Whether the Explorer's per-step work slows the model's next step (which the per-step-time
    ratio would hide): model steps timed one at a time, each right after either nothing or what
    the Explorer does per step (the step's two frames decoded by the approx decoder, encoded and
    sent to the headless frontend, whose ack arrives during the next step), in alternating order.
    Returns the ratio of each pair (after the Explorer's work / after nothing)."""
    family = family_for(pipe)
    with torch.no_grad():
        cond = family.encode(prompt, "", None)

        def model_step(k: int) -> float:
            step = traj[k]
            latents = step.latents.reshape(1, *step.latents.shape[-3:])
            began = time.perf_counter()
            family.predict(latents, torch.tensor(step.timestep), cond, True, guidance=guidance)
            return time.perf_counter() - began

        def explorer_work(k: int) -> None:
            ex.send({"type": "frame", "run": "interference", "seq": k, "k": k, "n": k + 1, "total": len(traj),
                     "its": 0.0, "g": [[0, guidance]]}, step_frames(traj, k, decoder=frame_decoder(traj)))

        ratios = []
        for i in range(rounds):
            k, timed = i % len(traj), {}
            for which in (("nothing", "explorer") if i % 2 == 0 else ("explorer", "nothing")):
                if which == "explorer":
                    explorer_work(k)
                timed[which] = model_step(k)
            ratios.append(timed["explorer"] / timed["nothing"])
    return ratios


class WorkerThread:
    """Runs calls in one lasting thread, as the Explorer runs its own (for --bare-thread)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="bare-trace", daemon=True).start()

    def _work(self) -> None:
        while True:
            call = self._jobs.get()
            try:
                self._results.put((True, call()))
            except BaseException as exc:  # handed back to the caller
                self._results.put((False, exc))

    def __call__(self, call):
        self._jobs.put(call)
        ok, value = self._results.get()
        if not ok:
            raise value
        return value


def fastest_quarter(times: list[float]) -> float:
    fastest = sorted(times)[:max(1, len(times) // 4)]
    return sum(fastest) / len(fastest)


def load(model: str):
    if model == "embedded":
        try:
            return nbd.load_pipeline(), "embedded shapes model"
        except nbd.EmbeddedModelMissing:
            print("(embedded model not shipped: using the tiny test pipeline)")
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline(), "tiny random-weight SD pipeline (nbdiffuse.testing)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40,
                        help="rounds of interleaved runs: bare, through the Explorer, through it in this thread")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--model", choices=["embedded", "tiny"], default="embedded")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the model's own)")
    parser.add_argument("--rounds", type=int, default=300, help="pairs of single model steps (interference check)")
    parser.add_argument("--ack-delay", type=float, default=0.005, help="s the headless browser takes to ack a frame")
    parser.add_argument("--bare-thread", action="store_true",
                        help="run the bare trace in a worker thread, as the Explorer runs its own (default: "
                             "this thread, as a notebook cell does)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    in_bare_thread = WorkerThread() if args.bare_thread else (lambda call: call())

    pipe, label = load(args.model)
    prompt = "big red circle on the left, white background"
    own = OwnWork()  # before the Explorer: its runner keeps the execute it is given
    in_ex_thread = InExplorerThread()
    ex = nbd.Explorer(pipe)
    in_ex_thread.ex = ex
    guidance = ex.guidance  # both sides run the same guidance (nbd.trace's default is the pipeline's)
    frontend = HeadlessFrontend(ex, ack_delay=args.ack_delay)
    # Warm up both paths (approx decoder fit, first-call allocations).
    in_bare_thread(lambda: nbd.trace(pipe, prompt, steps=3))
    ex.generate(prompt=prompt, steps=3)
    ex.wait()
    own.runs.clear()

    bare, explorer, ratios, cpu_ratios, paced, traffic = [], [], [], [], [], []
    piped, pipe_ratios = [], []  # a bare pipe(...): the steps and the final picture, as a user runs a pipeline
    same_ratios, thread_luck = [], []  # against a bare pipe(...) in the Explorer's own thread; main / that thread
    filled_ratios = []  # to the end of the job: every skipped step's frame made and sent too
    shown: list[float] = []  # when the status turned "done": the run's picture and its state are out
    ex.observe(lambda change: shown.append(time.perf_counter()) if change["new"] == "done" else None, names="status")
    here, here_steps, thread_steps = [], [], []  # the Explorer in the bare trace's thread (generate(background=False))
    same = dict(prompt=prompt, steps=args.steps, guidance=guidance, height=args.size, width=args.size)

    def in_this_thread(seed):
        ex.generate(seed=seed, background=False, **same)
        return ex.trajectory

    def bare_pipe(seed):
        size = {"height": args.size, "width": args.size} if args.size else {}
        return pipe(prompt, num_inference_steps=args.steps, guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(seed), **size).images[0]

    sides = ("bare", "explorer", "here", "pipe", "same")
    traced = sides[:3]
    for i in range(args.pairs):
        order = sides[i % len(sides):] + sides[:i % len(sides)]
        order = order if (i // 3) % 2 == 0 else order[::-1]
        times, cpu, runs = {}, {}, {}
        for which in order:
            began, began_cpu = time.perf_counter(), time.process_time()
            if which == "bare":
                runs[which] = in_bare_thread(lambda: nbd.trace(pipe, seed=i, **same))
            elif which == "pipe":
                in_bare_thread(lambda: bare_pipe(i))
            elif which == "same":
                in_ex_thread(lambda: bare_pipe(i))
            elif which == "here":
                shown.clear()
                runs[which] = in_bare_thread(lambda: in_this_thread(i))
            else:
                shown.clear()
                ex.generate(seed=i, **same)
                ex.wait()
                runs[which] = ex.trajectory
                filled = time.perf_counter() - began
            times[which] = (shown[0] if which in ("explorer", "here") else time.perf_counter()) - began
            # CPU time of this process, all threads: what the Explorer adds, less sensitive than
            # wall time to other programs sharing the machine.
            cpu[which] = time.process_time() - began_cpu
            if which == "explorer":
                sent = frontend.totals(since=began)
                traffic.append((times[which], sent, sum(f["bytes"] for f in frontend.frames if f["run"] == ex.run_id),
                                sum(1 for f in frontend.frames if f["run"] == ex.run_id)))
        if not all(torch.equal(runs["bare"][-1].latents, runs[side][-1].latents) for side in traced[1:]):
            raise SystemExit("the Explorer's runs and the bare trace differ: they must do the same work")
        # The time each run's denoising steps took (Step.seconds: model and sampler).
        step_time = {side: sum(step.seconds for step in runs[side]) for side in traced}
        here.append(times["here"] / times["pipe"])  # both in the main thread (or --bare-thread's)
        here_steps.append(step_time["here"] / step_time["bare"])
        thread_steps.append(step_time["explorer"] / step_time["here"])
        bare.append(times["bare"])
        explorer.append(times["explorer"])
        ratios.append(times["explorer"] / times["bare"])
        piped.append(times["pipe"])
        pipe_ratios.append(times["explorer"] / times["pipe"])
        same_ratios.append(times["explorer"] / times["same"])
        thread_luck.append(times["pipe"] / times["same"])
        filled_ratios.append(filled / times["same"])
        cpu_ratios.append(cpu["explorer"] / cpu["bare"])
        # Each run's time over its own denoising steps' time (model + sampler, timed by the trace):
        # the steps are the same work on both sides, so this divides out how fast the machine was
        # during that run.
        paced.append((times["explorer"] / step_time["explorer"]) / (times["bare"] / step_time["bare"]))

    seconds, sent, live_bytes, live_frames = traffic[len(traffic) // 2]
    side = args.size or ex.image_size[0]
    print(f"model: {label} at {side}x{side}; {args.steps} steps, torch threads {args.threads}, "
          f"{args.pairs} interleaved rounds (bare pipe(...) in the Explorer's thread and in this one, bare trace, Explorer, "
          f"Explorer in this thread); bare in "
          f"{'a worker thread' if args.bare_thread else 'the main thread'}")
    print(f"bare trace      median {statistics.median(bare):.3f} s")
    print(f"through Explorer median {statistics.median(explorer):.3f} s")
    print(f"bare pipe(...)   median {statistics.median(piped):.3f} s (its steps and the final picture)")
    low, high = median_interval(same_ratios)
    print(f"ratio explorer / bare pipe(...) in the Explorer's own thread: median {statistics.median(same_ratios):.3f} "
          f"(95% bootstrap interval {low:.3f}-{high:.3f}; pairs from {min(same_ratios):.3f} to "
          f"{max(same_ratios):.3f})  goal <= 1.05")
    low, high = median_interval(pipe_ratios)
    luck_low, luck_high = median_interval(thread_luck)
    print(f"  against a bare pipe(...) in the main thread (a notebook cell's): median "
          f"{statistics.median(pipe_ratios):.3f} ({low:.3f}-{high:.3f}); that thread's own luck: the same bare "
          f"pipe(...) in the main thread / in the Explorer's {statistics.median(thread_luck):.3f} "
          f"({luck_low:.3f}-{luck_high:.3f})")
    low, high = median_interval(filled_ratios)
    print(f"  to the last skipped step's frame made and sent (ex.wait() returns): median "
          f"{statistics.median(filled_ratios):.3f} ({low:.3f}-{high:.3f})")
    low, high = median_interval(ratios)
    print(f"ratio explorer / bare trace (no final picture): median {statistics.median(ratios):.3f} "
          f"(95% bootstrap interval {low:.3f}-{high:.3f}; "
          f"pairs from {min(ratios):.3f} to {max(ratios):.3f})")
    low, high = median_interval(paced)
    print(f"ratio at the machine's speed of each run (wall time / the run's own step time): median "
          f"{statistics.median(paced):.3f} (95% bootstrap interval {low:.3f}-{high:.3f})")
    low, high = median_interval(here)
    print(f"through the Explorer in the bare runs' thread (generate(background=False)) / the bare pipe(...) there: median "
          f"{statistics.median(here):.3f} (95% bootstrap interval {low:.3f}-{high:.3f})  goal <= 1.05; its steps' "
          f"time / the bare trace's {statistics.median(here_steps):.3f}; the Explorer's steps in its worker thread / "
          f"in this thread {statistics.median(thread_steps):.3f}")
    print(f"CPU-time ratio explorer / bare: median {statistics.median(cpu_ratios):.3f} "
          f"(min {min(cpu_ratios):.3f}, max {max(cpu_ratios):.3f})")
    print(f"fastest quarter of each side: {fastest_quarter(bare):.3f} s bare, {fastest_quarter(explorer):.3f} s "
          f"through the Explorer: ratio {fastest_quarter(explorer) / fastest_quarter(bare):.3f}")
    own_ms = [work * 1000 for work, _ in own.runs]
    shares = [work / loop for work, loop in own.runs]
    print(f"the Explorer's own work inside its runs: median {statistics.median(own_ms):.1f} ms a run, "
          f"(loop + own) / loop median {1 + statistics.median(shares):.3f} "
          f"(min {1 + min(shares):.3f}, max {1 + max(shares):.3f})")
    in_ex_thread.close()  # the patches come off in the reverse order of going on
    own.close()
    interference = step_interference(pipe, ex, runs["bare"], prompt, guidance, args.rounds)
    low, high = median_interval(interference)
    step_ratio = statistics.median(interference)
    print(f"a model step right after the Explorer's per-step work / right after nothing: median {step_ratio:.3f} "
          f"(95% bootstrap interval {low:.3f}-{high:.3f}; {args.rounds} pairs of single steps)")
    print(f"  -> Explorer / bare at an even machine speed: {statistics.median(paced):.3f} x {step_ratio:.3f} = "
          f"{statistics.median(paced) * step_ratio:.3f}  goal <= 1.05")
    print(f"one {args.steps}-step run ({seconds:.2f} s): {sent['messages']} messages "
          f"({live_frames} live frames, the rest state updates), {sent['bytes'] / 1024:.1f} KiB in all")
    print(f"  -> {sent['messages'] / seconds:.1f} messages/s, {sent['bytes'] / seconds / 1024:.1f} KiB/s; "
          f"live frames alone {live_bytes / max(live_frames, 1):.0f} B each (two views); "
          f"max unacked {frontend.max_unacked} (limit 2)")

    # A 512x512 run's live frame is the approx decoder at latent resolution (64x64 for SD's VAE):
    # the tiny pipeline at 128x128 has 64x64 latents too.
    traj = nbd.trace(pipe, prompt, steps=4, height=128, width=128) if label.startswith("tiny") else None
    if traj is not None:
        live = step_frames(traj, 1)
        final = full_frames(traj, 3)
        print(f"live frame of a 64x64-latent run (as SD at 512x512): x0 {len(live[0])} B, xt {len(live[1])} B "
              f"(JPEG); full-VAE frame of the final step (lossless) {len(final[0]) / 1024:.1f} KiB")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    smooth = np.clip(np.cumsum(rng.normal(0, 3, (512, 512, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    print(f"a 512x512 picture as a live frame: {len(encode_live(smooth)) / 1024:.1f} KiB (textured), "
          f"{len(encode_live(noise)) / 1024:.1f} KiB (pure noise, worst case); budget {LIVE_MAX_BYTES / 1000:.0f} KB")
    ex.close()
    frontend.close()


if __name__ == "__main__":
    main()
