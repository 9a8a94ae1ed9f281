"""The guidance lesson of the embedded shapes model, measured: misses unguided, hits guided, harm when overdone.

    python benchmarks/guidance_lesson.py [--model DIR] [--captions 400] [--guidance 1,3,5,10,20]
                                         [--steps 30] [--threads 2] [--batch 100] [--grid grid.png]
                                         [--pag 0,1,2,4] [--pag-layers up]

For each guidance scale, generates one picture for each of N held-out random captions (caption i
with seed i; seeds training never saw), 30 Euler steps, in batches through the pipeline itself,
and prints per-attribute adherence (nbdiffuse.shapes.adherence), joint adherence and the mean
share of pixels off the palette (nbdiffuse.shapes.off_palette: the sign of too much guidance),
then the bars of the guidance issue with pass/fail. --grid writes one caption per row at each
guidance scale (the README's sample grid). --pag: the same for each perturbed-attention guidance scale at
each guidance scale, through diffusers' StableDiffusionPAGPipeline on the model (--pag-layers: the UNet's
layers it perturbs); the bars are checked on its runs without PAG only.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.shapes import adherence, off_palette, random_caption

ATTRIBUTE_BARS = {"color": 0.90, "position": 0.90, "shape": 0.85, "size": 0.85, "background": 0.95}


def generate(pipe, prompts: list[str], seeds: list[int], guidance: float, steps: int, batch: int,
             **more) -> list[np.ndarray]:
    """uint8 (64, 64, 3) pictures, prompt i from seed i, batched through pipe(...) (more: its other keywords)."""
    out = []
    for start in range(0, len(prompts), batch):
        part = slice(start, start + batch)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[part]]
        images = pipe(prompts[part], guidance_scale=guidance, num_inference_steps=steps, generator=generators,
                      output_type="np", **more).images
        out.extend(np.clip(np.round(images * 255), 0, 255).astype(np.uint8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a shapes model folder (default: the embedded one)")
    parser.add_argument("--captions", type=int, default=400)
    parser.add_argument("--guidance", default="1,3,5,10,20")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--grid", default=None, help="write a PNG: rows of captions, one column per guidance scale")
    parser.add_argument("--json", default=None, help="write the figures here as JSON")
    parser.add_argument("--pag", default=None, help="perturbed-attention guidance scales, e.g. 0,1,2,4")
    parser.add_argument("--pag-layers", default="up", help="the UNet layers PAG perturbs (diffusers' pag_applied_layers)")
    args = parser.parse_args()
    scales = [float(g) for g in args.guidance.split(",")]
    torch.set_num_threads(args.threads)
    pipe = nbd.load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    from diffusers import EulerDiscreteScheduler

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    prompts = [random_caption(seed=1_000_000 + i).text() for i in range(args.captions)]
    seeds = list(range(args.captions))

    figures, pictures = {}, {}
    if args.pag is not None:
        from diffusers import StableDiffusionPAGPipeline

        pipe = StableDiffusionPAGPipeline.from_pipe(pipe, pag_applied_layers=args.pag_layers)
        pipe.set_progress_bar_config(disable=True)
    for g in scales:
        for pag in [float(p) for p in args.pag.split(",")] if args.pag is not None else [None]:
            began = time.perf_counter()
            more = {} if pag is None else {"pag_scale": pag}
            images = generate(pipe, prompts, seeds, g, args.steps, args.batch, **more)
            result = adherence(images, prompts)
            result["off_palette"] = float(np.mean([off_palette(im) for im in images]))
            if not pag:  # the bars and the grid: runs without PAG
                pictures[g], figures[g] = images[:6], result
            if pag is not None:
                figures[f"{g:g} pag {pag:g}"] = result
            label = f"guidance {g:>5g}" + ("" if pag is None else f", PAG {pag:g}")
            print(f"{label}: " + "  ".join(f"{k} {v:.3f}" for k, v in result.items())
                  + f"   ({time.perf_counter() - began:.0f} s)", flush=True)

    def at(g: float, key: str):
        return figures[g][key] if g in figures else None

    checks = []
    if 1.0 in figures:
        checks.append(("guidance 1: joint <= 0.75", at(1.0, "joint") <= 0.75))
    if 5.0 in figures:
        checks.append(("guidance 5: joint >= 0.95", at(5.0, "joint") >= 0.95))
        checks += [(f"guidance 5: {k} >= {bar}", at(5.0, k) >= bar) for k, bar in ATTRIBUTE_BARS.items()]
    if 5.0 in figures and 20.0 in figures:
        checks.append(("guidance 20: joint >= 5 points under guidance 5", at(20.0, "joint") <= at(5.0, "joint") - 0.05))
        checks.append(("guidance 20: off-palette share >= 2x guidance 5's",
                       at(20.0, "off_palette") >= 2 * at(5.0, "off_palette")))
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"captions": args.captions, "steps": args.steps, "figures": {str(g): v for g, v in figures.items()}},
                      f, indent=1)
    if args.grid:
        write_grid(args.grid, prompts[:6], [g for g in scales if g in pictures], pictures)


def write_grid(path: str, prompts: list[str], scales: list[float], pictures: dict, cell: int = 128) -> None:
    """One row per caption (its text under the row), one column per guidance scale (labelled on top)."""
    from PIL import ImageDraw

    gap, head, foot = 6, 18, 16
    width = len(scales) * (cell + gap) - gap
    grid = Image.new("RGB", (width, head + len(prompts) * (cell + foot + gap)), "white")
    draw = ImageDraw.Draw(grid)
    for j, g in enumerate(scales):
        draw.text((j * (cell + gap) + 4, 3), f"guidance {g:g}", fill="black")
    for i, prompt in enumerate(prompts):
        top = head + i * (cell + foot + gap)
        for j, g in enumerate(scales):
            picture = Image.fromarray(pictures[g][i]).resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(picture, (j * (cell + gap), top))
        draw.text((4, top + cell + 2), prompt, fill="black")
    grid.save(path)


if __name__ == "__main__":
    main()
