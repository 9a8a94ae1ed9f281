"""Cost of tracing a PAG run (perturbed-attention guidance, core/pag.py) in nbdiffuse's own loop: nbd.trace /
a bare pipe(...) call with the same pag_scale, steps, guidance and seed, interleaved (the order alternates each
round), on the CPU; the script prints the median ratio. Goal: <= 1.05, as for runs without PAG. It also prints
what PAG costs the model itself (a third batch row): the bare PAG pipe(...) / the bare plain one.

    python benchmarks/pag_overhead.py [--steps 20] [--rounds 9] [--threads 1] [--pag-scale 3]

The embedded model as diffusers' StableDiffusionPAGPipeline (from_pipe, its mid block perturbed), where it is
shipped; otherwise tiny random SD components (tiny: fixed costs weigh more than a real model's).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from diffusers import StableDiffusionPAGPipeline

import nbdiffuse as nbd

PROMPT = "a red circle on the left, white background"


def pipelines() -> tuple[str, object, object]:
    """(label, the plain pipeline, its PAG pipeline on the same components)."""
    try:
        plain = nbd.load_pipeline(device="cpu")
        label = "embedded model (StableDiffusionPAGPipeline, mid block)"
    except (nbd.EmbeddedModelMissing, nbd.PipelineLoadError) as exc:
        print(f"(the embedded model is not here: {exc}; tiny random SD instead)")
        from nbdiffuse.testing import tiny_sd_pipeline

        plain, label = tiny_sd_pipeline(), "tiny random SD (StableDiffusionPAGPipeline, mid block)"
    pag = StableDiffusionPAGPipeline.from_pipe(plain, pag_applied_layers="mid")
    pag.set_progress_bar_config(disable=True)
    plain.set_progress_bar_config(disable=True)
    return label, plain, pag


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--pag-scale", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.steps} steps, guidance {args.guidance}, pag_scale {args.pag_scale}, {args.rounds} interleaved "
          f"rounds, {args.threads} thread(s), {platform.processor() or platform.machine()}, torch {torch.__version__}")
    label, plain, pag = pipelines()
    steps, guidance = args.steps, args.guidance

    def own(pipe, **kw):
        return lambda: pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                            generator=torch.Generator("cpu").manual_seed(0), **kw)

    runs = {"bare": own(pag, pag_scale=args.pag_scale),
            "traced": lambda: nbd.trace(pag, PROMPT, steps=steps, guidance=guidance, seed=0,
                                        pipe_kwargs={"pag_scale": args.pag_scale}),
            "plain": own(plain)}
    for fn in runs.values():  # warm-up: allocator, first-call overheads
        fn()
    took: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        names = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in names:
            took[name].append(timed(runs[name]))
    ratios = [t / b for t, b in zip(took["traced"], took["bare"])]
    cost = [b / p for b, p in zip(took["bare"], took["plain"])]
    print(f"{label}: bare PAG pipe(...) {statistics.median(took['bare']):.3f} s, trace "
          f"{statistics.median(took['traced']):.3f} s; ratio trace/bare median {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f}); goal <= 1.05")
    print(f"PAG itself (a third batch row): bare PAG pipe(...) / bare plain pipe(...) median {statistics.median(cost):.3f}")


if __name__ == "__main__":
    main()
