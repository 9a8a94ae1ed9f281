"""What a branch costs, and how fast a what-if frame is.

1. Branching at step k must cost the remaining steps only: the script times a full traced run
   and branches at several k, interleaved, and prints measured / expected ((N-k-1)/N) ratios.
   Goal: within 5% of 1.0.
2. A what-if frame (x0 at step k re-weighed with another guidance, approx-decoded): goal <= 20 ms on CPU.

    python benchmarks/branch_cost.py [--model FOLDER_OR_HUB_ID] [--steps 30] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import nbdiffuse as nbd
from trace_overhead import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, label = load(args.model)
    prompt, n = "small blue square at the top, gray background", args.steps

    def timed(fn):
        began = time.perf_counter()
        result = fn()
        return time.perf_counter() - began, result

    _, traj = timed(lambda: nbd.trace(pipe, prompt, steps=n, guidance=5.0, seed=0, scheduler="dpmpp_2m"))
    points = [n // 4, n // 2, 3 * n // 4]
    full_s, branch_s = [], {k: [] for k in points}
    for r in range(args.rounds):
        full_s.append(timed(lambda: nbd.trace(pipe, prompt, steps=n, guidance=5.0, seed=0, scheduler="dpmpp_2m"))[0])
        for k in (points if r % 2 == 0 else points[::-1]):
            branch_s[k].append(timed(lambda: nbd.branch(pipe, traj, at=k, guidance=8.0))[0])

    full = statistics.median(full_s)
    print(f"model: {label}; {n} steps, dpmpp_2m, {args.threads} thread(s), {args.rounds} rounds")
    print(f"full run: {full:.3f} s")
    print(f"{'branch at':>10s}{'seconds':>10s}{'expected':>10s}{'ratio':>8s}")
    for k in points:
        measured = statistics.median(branch_s[k])
        expected = full * (n - k - 1) / n
        print(f"{k:>10d}{measured:>10.3f}{expected:>10.3f}{measured / expected:>8.3f}")

    traj.approx_decoder()
    frame_ms = []
    for i in range(50):
        began = time.perf_counter()
        traj.guided_image(n // 2, guidance=1.0 + (i % 12), decoder="approx")
        frame_ms.append((time.perf_counter() - began) * 1000)
    print(f"what-if frame (guided_x0 + approx decode + upscale): median {statistics.median(frame_ms):.2f} ms; "
          "goal <= 20 ms")


if __name__ == "__main__":
    main()
