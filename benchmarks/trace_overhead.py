"""Cost of tracing: nbd.trace with an approx preview decoded every step vs a bare pipe(...) call.

Both run the same model, prompt, steps, guidance and seed, interleaved (the order alternates
each round), on the CPU; the script prints the median ratio. Goal: <= 1.05.

    python benchmarks/trace_overhead.py [--model FOLDER_OR_HUB_ID] [--steps 30] [--rounds 7] [--watched | --inpaint]

--watched traces the pipeline the way a pipeline outside the families runs (core/generic.py: pipe(...)
itself, watched through its step callback, x0 read from what its sampler is given), on the same model.
--inpaint runs the model's inpainting pipeline (load_pipeline(inpaint=True): SD's, in the family's loop,
core/inpaint_loop.py) on a picture of its own, its right half masked, at strength 1: nbd.trace(image=...,
mask_image=...) against pipe(...) with both.

Without --model it uses the embedded shapes model, or, where that is not shipped, a
random-weight Stable Diffusion pipeline of about its size (same compute per step).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.generic import prepare_generic


def load(model: str | None):
    if model is not None:
        return nbd.load_pipeline(model, device="cpu"), model
    try:
        return nbd.load_pipeline(device="cpu"), "embedded shapes model"
    except nbd.EmbeddedModelMissing:
        from nbdiffuse.testing import tiny_sd_pipeline

        pipe = tiny_sd_pipeline(sample_size=16, channels=(64, 128), layers=2)
        params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
        return pipe, f"random-weight SD pipeline, UNet {params:.1f}M params, 16x16x4 latents"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--watched", action="store_true", help="the generic path's trace (pipe(...) watched)")
    parser.add_argument("--inpaint", action="store_true", help="the model's inpainting pipeline, half the picture masked")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, label = load(args.model)
    prompt = "big red circle on the left, white background"
    picture = {}
    if args.inpaint:
        start = nbd.trace(pipe, prompt, steps=20, guidance=args.guidance, seed=0).final_image
        mask = Image.new("L", start.size, 0)
        mask.paste(255, (start.width // 2, 0, start.width, start.height))
        pipe, label = nbd.load_pipeline(pipe, inpaint=True), f"{label}, inpainting (half the picture masked)"
        prompt = "big blue square on the right, white background"
        picture = {"image": start, "mask_image": mask, "strength": 1.0}
    decode_ms: list[float] = []

    def preview(traj, step):  # the model's own approx decoder, as the Explorer and traj.image use it
        began = time.perf_counter()
        traj.approx_decoder().rgb_many([step.pred_x0])
        decode_ms.append((time.perf_counter() - began) * 1000)

    def bare() -> float:
        began = time.perf_counter()
        pipe(prompt, num_inference_steps=args.steps, guidance_scale=args.guidance, output_type="latent",
             generator=torch.Generator("cpu").manual_seed(0), **picture)
        return time.perf_counter() - began

    def traced() -> float:
        began = time.perf_counter()
        if args.watched:
            run = prepare_generic(pipe, prompt, "", args.steps, args.guidance, 0, None, None, None, on_step=preview)
            assert run.execute().has_x0
        else:
            nbd.trace(pipe, prompt, steps=args.steps, guidance=args.guidance, seed=0, on_step=preview, **picture)
        return time.perf_counter() - began

    bare(), traced()  # warm-up: allocator, first-call overheads
    bare_s, traced_s, ratios = [], [], []
    for r in range(args.rounds):
        order = (bare, traced) if r % 2 == 0 else (traced, bare)
        times = {fn.__name__: fn() for fn in order}
        bare_s.append(times["bare"])
        traced_s.append(times["traced"])
        ratios.append(times["traced"] / times["bare"])

    print(f"model: {label}; {args.steps} steps, guidance {args.guidance}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"{'':28s}{'median s':>10s}{'ms/step':>10s}")
    print(f"{'bare pipe(...)':28s}{statistics.median(bare_s):10.3f}{statistics.median(bare_s) / args.steps * 1000:10.1f}")
    name = "watched" if args.watched else "inpainting" if args.inpaint else "trace"
    print(f"{name} + approx preview".ljust(28) + f"{statistics.median(traced_s):10.3f}"
          f"{statistics.median(traced_s) / args.steps * 1000:10.1f}")
    print(f"approx preview decode: median {statistics.median(decode_ms):.3f} ms per frame")
    print(f"ratio trace/bare: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)}); goal <= 1.05")


if __name__ == "__main__":
    main()
