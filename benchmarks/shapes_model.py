"""The embedded shapes model against its bars: adherence, guidance effect, speed, diversity.

    python benchmarks/shapes_model.py [--captions 200] [--steps 30] [--threads 1] [--grid samples.png]
                                      [--curve 1,1.5,2,3,5,7.5]

Prints per-attribute adherence (nbdiffuse.shapes.adherence, a geometric evaluator) at guidance 5
and 1 on held-out random captions with 30 Euler steps, the time of one 30-step guided run end to
end (prompt to decoded image), and how "red circle" varies over 8 seeds. --grid writes a picture
of samples: 16 held-out captions at guidance 5, then "red circle" over 8 seeds. --curve also
scores the same captions and seeds at other guidance scales and prints joint adherence and misses
against guidance (the curve the guidance lesson plots).
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
    parser.add_argument("--grid", default=None, help="write a PNG grid of samples here")
    parser.add_argument("--curve", default="", help="comma-separated guidance scales to score as well, e.g. 1,1.5,2,3,5,7.5")
    args = parser.parse_args()
    try:
        curve = sorted({float(g) for g in args.curve.split(",") if g.strip()} | {1.0, 5.0})
    except ValueError:
        parser.error(f"--curve={args.curve!r}: comma-separated numbers, e.g. 1,1.5,2,3,5,7.5")
    torch.set_num_threads(args.threads)
    pipe = nbd.load_pipeline(args.model, device="cpu")
    prompts = [random_caption(seed=1_000_000 + i).text() for i in range(args.captions)]  # seeds training never saw

    results = {}
    for guidance in curve:
        images = [nbd.trace(pipe, p, steps=args.steps, guidance=guidance, seed=i, scheduler="euler").image(
            -1, decoder="full") for i, p in enumerate(prompts)]
        results[guidance] = adherence(images, prompts)

    timings = []
    for i in range(5):
        began = time.perf_counter()
        nbd.trace(pipe, prompts[i], steps=args.steps, guidance=5.0, seed=i).image(-1, decoder="full")
        timings.append(time.perf_counter() - began)

    red_circles = [nbd.trace(pipe, "red circle", steps=args.steps, guidance=5.0, seed=s).image(-1, decoder="full")
                   for s in range(8)]
    seen = [measure(image) for image in red_circles]
    if args.grid:
        shown = [nbd.trace(pipe, p, steps=args.steps, guidance=5.0, seed=i, scheduler="euler").image(-1, decoder="full")
                 for i, p in enumerate(prompts[:16])]
        write_grid(args.grid, list(zip(shown, prompts[:16])) + [(image, f"red circle, seed {s}")
                                                                  for s, image in enumerate(red_circles)])

    print(f"{args.captions} held-out captions, {args.steps} Euler steps, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'attribute':12s}{'g=5':>8s}{'g=1':>8s}{'bar':>8s}")
    for name in ("color", "position", "shape", "size", "background", "joint"):
        bar = f"{BARS[name]:.2f}" if name in BARS else ""
        print(f"{name:12s}{results[5.0][name]:8.3f}{results[1.0][name]:8.3f}{bar:>8s}")
    gain = (results[5.0]["joint"] - results[1.0]["joint"]) * 100
    print(f"joint adherence gain from guidance 1 to 5: {gain:+.1f} points (bar: >= +15)")
    if len(curve) > 2:
        print("guidance  joint  misses")
        for guidance in curve:
            joint = results[guidance]["joint"]
            print(f"{guidance:8g}{joint:7.3f}{round((1 - joint) * args.captions):5d}/{args.captions}")
    print(f"30-step guided run, prompt to full-VAE image: median {statistics.median(timings):.2f} s (bar: <= 1.5 s)")
    for attribute in ("position", "size", "background", "shape", "color"):
        values = sorted({str(getattr(m, attribute)) for m in seen})
        print(f"'red circle' over 8 seeds, distinct {attribute}: {len(values)} ({', '.join(values)})")


def write_grid(path: str, items: list, columns: int = 8, scale: int = 2) -> None:
    """Samples upscaled (nearest neighbour, as the Explorer shows them) with their captions beneath."""
    from PIL import Image, ImageDraw, ImageFont

    side, text_h = 64 * scale, 38
    rows = -(-len(items) // columns)
    grid = Image.new("RGB", (columns * side, rows * (side + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=10)
    for n, (image, caption) in enumerate(items):
        x, y = n % columns * side, n // columns * (side + text_h)
        grid.paste(image.resize((side, side), Image.NEAREST), (x, y))
        words, lines = caption.split(), [""]
        for word in words:  # wrap to the tile's width
            trial = f"{lines[-1]} {word}".strip()
            if draw.textlength(trial, font=font) <= side - 4 or not lines[-1]:
                lines[-1] = trial
            else:
                lines.append(word)
        draw.multiline_text((x + 2, y + side + 1), "\n".join(lines[:3]), fill="black", font=font, spacing=1)
    grid.save(path, optimize=True)


if __name__ == "__main__":
    main()
