"""The embedded model's drawable ControlNet: does the object take the drawn shape where it was drawn,
and what does a ControlNet step cost?

Held-out outlines: every shape x place x size (4 x 5 x 2 = 40) drawn by hand (nbdiffuse.shapes.outline,
seeds the training pool never drew), repeated to --count (200 by default). Each is traced with a prompt
that names only a colour and a background (so the outline alone says shape, place and size), 20 Euler
steps, guidance 5, and the final picture is read by the shapes evaluator (nbd.shapes.measure): a hit
when its shape and its position are the drawn ones. The same runs at control_scale=0 (the plain
model, bit for bit) give the chance level.

Cost: the same runs with and without the ControlNet, interleaved, 1 torch thread: the median ratio of
a step's time (Step.seconds).

    python benchmarks/controlnet_outline.py [--count 200] [--steps 20] [--scale 1] [--controlnet DIR] [--chance N]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbdiffuse as nbd  # noqa: E402
from nbdiffuse.shapes.grammar import VOCABULARY, Caption  # noqa: E402
from nbdiffuse.shapes.outline import outline  # noqa: E402

HELD_OUT_SEED = 1_000_000  # training draws its outlines from seeds [seed, 7, i]; these come from another stream


def cases(count: int) -> list[tuple[str, str, str, str, str, int]]:
    grid = list(itertools.product(VOCABULARY["shapes"], VOCABULARY["positions"], VOCABULARY["sizes"]))
    colors = [c for c in VOCABULARY["colors"]]
    backgrounds = VOCABULARY["backgrounds"]
    out = []
    for i in range(count):
        shape, position, size = grid[i % len(grid)]
        color = colors[i % len(colors)]
        background = [b for b in backgrounds if b != color][(i // len(colors)) % 3]
        out.append((shape, position, size, color, background, HELD_OUT_SEED + i))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--scale", type=float, default=1.0, help="control_scale of the ControlNet runs")
    parser.add_argument("--controlnet", default="outline", help="'outline' (shipped) or a ControlNet folder")
    parser.add_argument("--chance", type=int, default=None,
                        help="run the plain model (control_scale=0) on the first N outlines only (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = nbd.load_pipeline(controlnet=args.controlnet)
    hits = {"shape": 0, "position": 0, "size": 0, "both": 0}
    chance = dict(hits)
    ratios, chance_runs = [], args.count if args.chance is None else min(args.chance, args.count)
    for n, (shape, position, size, color, background, seed) in enumerate(cases(args.count)):
        drawn = outline(shape, position, size, seed=seed)
        prompt = Caption(color=color, background=background).text()
        run = dict(steps=args.steps, guidance=args.guidance, seed=seed, control_image=drawn)
        plain = nbd.trace(pipe, prompt, control_scale=0.0, **run) if n < chance_runs else None
        traj = nbd.trace(pipe, prompt, control_scale=args.scale, **run)
        for tally, t in ((hits, traj), (chance, plain)):
            if t is None:
                continue
            seen = nbd.shapes.measure(t.final_image)
            tally["shape"] += seen.shape == shape
            tally["position"] += seen.position == position
            tally["size"] += seen.size == size
            tally["both"] += seen.shape == shape and seen.position == position
        if plain is not None:
            ratios.append(statistics.median(s.seconds for s in traj.steps[1:]) /
                          statistics.median(s.seconds for s in plain.steps[1:]))
        if (n + 1) % 20 == 0:
            print(f"{n + 1}/{args.count}: shape and place {hits['both'] / (n + 1):.1%}", flush=True)
    total = args.count
    print(f"held-out outlines: {total} (4 shapes x 5 places x 2 sizes, hand-drawn), {args.steps} steps, "
          f"guidance {args.guidance:g}, control_scale {args.scale:g}, prompt names colour and background only")
    for key in ("both", "shape", "position", "size"):
        name = "shape and place" if key == "both" else key
        print(f"  {name:16s} ControlNet {hits[key] / total:6.1%}   plain model (control_scale=0, "
              f"{chance_runs} outlines) {chance[key] / max(chance_runs, 1):6.1%}")
    if ratios:
        print(f"a ControlNet step / a plain step (median of per-run medians, {len(ratios)} pairs, 1 thread): "
              f"{statistics.median(ratios):.3f} (runs {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
