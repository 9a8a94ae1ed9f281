"""Cost of tracing a ControlNet run in nbdiffuse's own loop: nbd.trace(control_image=...) / a bare pipe(...) call
with the same picture, scale, steps, guidance and seed, interleaved (the order alternates each round), on the CPU;
the script prints the median ratio per pipeline. Goal: <= 1.05, as for runs without control.

    python benchmarks/controlnet_overhead.py [--steps 20] [--rounds 9] [--threads 1] [--flux]

The embedded model with its outline ControlNet (StableDiffusionControlNetPipeline, 64 x 64), where it is shipped;
--flux adds a random-weight FluxControlNetPipeline (tiny: its fixed costs weigh more than a real model's).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import nbdiffuse as nbd

PROMPT = "red, white background"


def pipelines(flux: bool) -> list[tuple[str, object, object, dict]]:
    """(label, pipeline, control picture, pipe(...)'s own name for it) of each pipeline measured."""
    found = []
    try:
        pipe = nbd.load_pipeline(controlnet="outline", device="cpu")
        found.append(("embedded model + outline ControlNet", pipe, nbd.shapes.outline("star", "on the left"), "image"))
    except (nbd.EmbeddedModelMissing, nbd.PipelineLoadError) as exc:
        print(f"(the embedded model's ControlNet is not here: {exc})")
    if flux:
        from PIL import Image

        from nbdiffuse.testing import tiny_flux_controlnet_pipeline

        found.append(("tiny random Flux + ControlNet", tiny_flux_controlnet_pipeline(),
                      Image.effect_noise((32, 32), 64).convert("RGB"), "control_image"))
    return found


def measure(pipe, picture, name: str, steps: int, guidance: float, rounds: int) -> tuple[float, float, list[float]]:
    def bare() -> float:
        began = time.perf_counter()
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
             generator=torch.Generator("cpu").manual_seed(0), **{name: picture})
        return time.perf_counter() - began

    def traced() -> float:
        began = time.perf_counter()
        nbd.trace(pipe, PROMPT, steps=steps, guidance=guidance, seed=0, control_image=picture)
        return time.perf_counter() - began

    bare(), traced()  # warm-up: allocator, first-call overheads
    bare_s, traced_s, ratios = [], [], []
    for r in range(rounds):
        order = (bare, traced) if r % 2 == 0 else (traced, bare)
        times = {fn.__name__: fn() for fn in order}
        bare_s.append(times["bare"])
        traced_s.append(times["traced"])
        ratios.append(times["traced"] / times["bare"])
    return statistics.median(bare_s), statistics.median(traced_s), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--flux", action="store_true", help="also a tiny random-weight FluxControlNetPipeline")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.steps} steps, guidance {args.guidance}, {args.rounds} interleaved rounds, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    for label, pipe, picture, name in pipelines(args.flux):
        bare_s, traced_s, ratios = measure(pipe, picture, name, args.steps, args.guidance, args.rounds)
        print(f"{label}: bare pipe(...) {bare_s:.3f} s, trace {traced_s:.3f} s; ratio trace/bare median "
              f"{statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}); goal <= 1.05")


if __name__ == "__main__":
    main()
