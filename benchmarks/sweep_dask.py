"""A 16-cell sweep of the embedded model: 2 local Dask worker processes vs this process, side by side.

Goal (issue #25): on a 2-core CPU, 2 workers (one torch thread each) run the grid >= 1.6x as fast as
this process does with one thread. Both sweeps do the same model work (frames=False: the workers
send runs without pictures, as the in-process sweep keeps them); the script also times the Dask
sweep with frames=True (each step's pictures drawn by the VAE on the workers and sent along).
Each worker loads the model itself, once: that cost is inside the Dask time and printed apart
(the in-process model is loaded before its clock starts, as a notebook would have it already).
The cluster's start (processes spawned, nbdiffuse imported) is printed apart too and not counted.

The wall-time ratio needs both cores idle. On a shared machine the script also prints the ratio
its CPU times imply: this process's CPU time for the grid against that of the busier worker (a
worker's cells run one after another on its own core, so on 2 idle cores its CPU time is its wall time).

Measured 2026-12-06, 30 steps, 2-core CPU idle (load 1.8): 13.62 s here, 10.16 s on 2 workers with
their model loads (2.33 and 2.53 s) inside: 1.34x; without the loads 1.78x; the next sweep on the same
workers (models kept) 7.33 s: 1.86x. Cluster start 4.26 s, not counted. Every run bit for bit equal.
On a shared machine (load average 7-13 from other work) the same script gave 0.51x wall.
README ("Benchmarks") has the rest.

    python benchmarks/sweep_dask.py [--steps 10] [--grid 4x4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import nbdiffuse as nbd  # noqa: E402

PROMPT = "big red circle on the left, white background"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--grid", default="4x4", help="seeds x guidances, e.g. 4x4 (16 cells)")
    parser.add_argument("--frames", action="store_true", help="also time the Dask sweep with frames=True")
    parser.add_argument("--dask-defaults", action="store_true",
                        help="keep Dask's MALLOC_TRIM_THRESHOLD_ and its statistical profiler in the workers")
    args = parser.parse_args()
    import dask
    from distributed import Client, LocalCluster

    if not args.dask_defaults:  # what README's set-up recommends for nbdiffuse workers
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                         "distributed.worker.profile.enabled": False})

    torch.set_num_threads(1)
    rows, columns = (int(n) for n in args.grid.split("x"))
    axes = {"seed": list(range(rows)), "guidance": [float(2 + 2 * j) for j in range(columns)]}
    cells = rows * columns

    began = time.perf_counter()
    pipe = nbd.load_pipeline()
    load_here = time.perf_counter() - began
    began = time.perf_counter()
    here = nbd.sweep(pipe, PROMPT, axes=axes, steps=args.steps, progress=False)
    t_here = time.perf_counter() - began

    began = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2)
        t_start = time.perf_counter() - began
        executor = client.get_executor()
        began = time.perf_counter()
        there = nbd.sweep(None, PROMPT, axes=axes, steps=args.steps, executor=executor, frames=False, progress=False)
        t_there = time.perf_counter() - began
        # The next sweep on the same cluster: each worker kept its model. Other seeds (the same amount of
        # work): Dask would hand back results it still holds for identical tasks.
        again = dict(axes, seed=[s + 1000 for s in axes["seed"]])
        began = time.perf_counter()
        warm = nbd.sweep(None, PROMPT, axes=again, steps=args.steps, executor=executor, frames=False, progress=False)
        t_warm = time.perf_counter() - began
        t_frames = None
        if args.frames:
            began = time.perf_counter()
            nbd.sweep(None, PROMPT, axes=axes, steps=args.steps, executor=executor, frames=True, progress=False)
            t_frames = time.perf_counter() - began
    loads = [c.load_seconds for c in there.cells if c.load_seconds is not None]
    cell_here = statistics.median(c.seconds for c in here.cells)
    cell_there = statistics.median(c.seconds for c in there.cells if c.load_seconds is None)
    # CPU time, which a busy machine does not stretch: this process's total against the busier worker's
    cpu_here = sum(c.cpu_seconds for c in here.cells)
    per_worker: dict = {}
    for c in there.cells:
        per_worker.setdefault(c.worker, []).append(c)
    cpu_there = max_cpu(there)
    cpu_loads = max(sum(c.cpu_seconds for c in cs if c.load_seconds is not None) for cs in per_worker.values())
    cpu_cell_there = statistics.median(c.cpu_seconds for c in there.cells if c.load_seconds is None)
    same = all(torch.equal(a.steps[-1].latents, b.steps[-1].latents) for a, b in zip(here.runs, there.runs))
    print(f"{cells} cells x {args.steps} steps of the embedded model, {os.cpu_count()} CPUs, 1 torch thread per process; "
          f"workers {'with Dask defaults' if args.dask_defaults else 'without MALLOC_TRIM_THRESHOLD_ and profiler'}")
    print(f"in this process:     {t_here:7.2f} s  ({t_here / cells:.2f} s a cell; model loaded before: {load_here:.2f} s)")
    print(f"2 Dask workers:      {t_there:7.2f} s  (model loads on the workers: {', '.join(f'{s:.2f}' for s in loads)} s)")
    print(f"median cell: {cell_here:.2f} s here, {cell_there:.2f} s on a worker (its model loaded)")
    print(f"ratio in-process / Dask: {t_here / t_there:.2f}x  (without the workers' loads: "
          f"{t_here / (t_there - max(loads, default=0.0)):.2f}x)")
    print(f"CPU time: {cpu_here:.2f} s here; the busier worker {cpu_there:.2f} s, of which its first cell (model load) "
          f"{cpu_loads:.2f} s; a cell {statistics.median(c.cpu_seconds for c in here.cells):.3f} s here, "
          f"{cpu_cell_there:.3f} s on a worker")
    print(f"implied ratio on 2 idle cores (CPU time): {cpu_here / cpu_there:.2f}x with the workers' model loads, "
          f"{cpu_here / (cpu_there - cpu_loads + cpu_cell_there):.2f}x without")
    print(f"the next sweep on the same workers (models kept): {t_warm:7.2f} s, ratio {t_here / t_warm:.2f}x; "
          f"CPU-implied {cpu_here / max_cpu(warm):.2f}x; errors: {len(warm.errors)}")
    if t_frames is not None:
        print(f"2 Dask workers, frames=True: {t_frames:7.2f} s  (ratio {t_here / t_frames:.2f}x; the model is loaded)")
    print(f"cluster start (not counted): {t_start:.2f} s; runs equal bit for bit: {same}; "
          f"errors: {len(there.errors)}; load average: {os.getloadavg()[0]:.2f}")


def max_cpu(sweep) -> float:
    """The CPU time of the busier worker over its cells."""
    per_worker: dict = {}
    for c in sweep.cells:
        per_worker[c.worker] = per_worker.get(c.worker, 0.0) + c.cpu_seconds
    return max(per_worker.values())


if __name__ == "__main__":
    main()
