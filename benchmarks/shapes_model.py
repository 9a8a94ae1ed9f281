"""The embedded shapes model against its bars: adherence, guidance effect, speed, diversity.

    python benchmarks/shapes_model.py [--captions 200] [--steps 30] [--threads 1]

Prints per-attribute adherence (nbdiffuse.shapes.adherence, a geometric evaluator) at guidance 5
and 1 on held-out random captions with 30 Euler steps, the time of one 30-step guided run end to
end (prompt to decoded image), and how "red circle" varies over 8 seeds.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import nbdiffuse as nbd
from nbdiffuse.shapes import adherence, measure, random_caption

BARS = {"color": 0.90, "position": 0.90, "shape": 0.85, "size": 0.85, "background": 0.95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a shapes model folder (default: the embedded one)")
    parser.add_argument("--captions", type=int, default=200)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = nbd.load_pipeline(args.model, device="cpu")
    prompts = [random_caption(seed=1_000_000 + i).text() for i in range(args.captions)]  # seeds training never saw

    results = {}
    for guidance in (5.0, 1.0):
        images = [nbd.trace(pipe, p, steps=args.steps, guidance=guidance, seed=i, scheduler="euler").image(
            -1, decoder="full") for i, p in enumerate(prompts)]
        results[guidance] = adherence(images, prompts)

    timings = []
    for i in range(5):
        began = time.perf_counter()
        nbd.trace(pipe, prompts[i], steps=args.steps, guidance=5.0, seed=i).image(-1, decoder="full")
        timings.append(time.perf_counter() - began)

    seen = [measure(nbd.trace(pipe, "red circle", steps=args.steps, guidance=5.0, seed=s).image(-1, decoder="full"))
            for s in range(8)]

    print(f"{args.captions} held-out captions, {args.steps} Euler steps, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'attribute':12s}{'g=5':>8s}{'g=1':>8s}{'bar':>8s}")
    for name in ("color", "position", "shape", "size", "background", "joint"):
        bar = f"{BARS[name]:.2f}" if name in BARS else ""
        print(f"{name:12s}{results[5.0][name]:8.3f}{results[1.0][name]:8.3f}{bar:>8s}")
    gain = (results[5.0]["joint"] - results[1.0]["joint"]) * 100
    print(f"joint adherence gain from guidance 1 to 5: {gain:+.1f} points (bar: >= +15)")
    print(f"30-step guided run, prompt to full-VAE image: median {statistics.median(timings):.2f} s (bar: <= 1.5 s)")
    for attribute in ("position", "size", "background", "shape", "color"):
        values = sorted({str(getattr(m, attribute)) for m in seen})
        print(f"'red circle' over 8 seeds, distinct {attribute}: {len(values)} ({', '.join(values)})")


if __name__ == "__main__":
    main()
