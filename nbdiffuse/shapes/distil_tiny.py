"""Distil the embedded model's tiny decoder from its own VAE: `python -m nbdiffuse.shapes.distil_tiny`.

The teacher is the shipped VAE's decoder; the data are the latents live frames will actually show:
x0 predictions and noisy latents x_t at every step of the model's own runs (captions of every
kind, guidance 1-12, several samplers), plus latents of rendered pictures and noise around them.
The student (core/tiny_decoder.py) learns the teacher's pictures at the output size with an L1 loss.
Held-out runs (other captions and seeds) give the figures TRAINING.md and the README state: mean
absolute error against decoder="full" over all steps (x0 and x_t views) and the cost of a frame
next to a guided step. A CPU run of minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

TINY_FOLDER = "tiny_decoder"  # beside unet/ and vae/ in a model folder (core/loading.py looks for it)
SCHEDULERS = ("euler", "euler", "dpmpp_2m", "ddim", "euler_a")


def run_latents(pipe: Any, runs: int, seed: int, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 latents, x_t latents) of every step of `runs` runs of the model: what live frames show."""
    from ..core.trace import trace
    from .grammar import random_caption

    x0, xt = [], []
    rng = np.random.default_rng(seed)
    for i in range(runs):
        caption = random_caption(seed=seed + i, omit=0.3).text()
        traj = trace(pipe, caption, steps=steps, guidance=float(rng.choice([1, 2, 3, 5, 7.5, 12])),
                     seed=seed + i, scheduler=SCHEDULERS[i % len(SCHEDULERS)])
        x0.append(torch.stack([traj.latents_for(k, "x0").float() for k in range(len(traj))]))
        xt.append(torch.stack([traj.latents_for(k, "xt").float() for k in range(len(traj))]))
    return torch.cat(x0), torch.cat(xt)


def render_latents(pipe: Any, count: int, seed: int) -> torch.Tensor:
    """Latents of rendered pictures of the shapes world (the clean end of every run)."""
    from ..core.decode import to_pipeline_space
    from .grammar import random_caption
    from .render import render_array, to_tensor

    captions = [random_caption(seed=seed + i) for i in range(count)]
    pixels = to_tensor(render_array(captions, [seed + i for i in range(count)]))
    with torch.no_grad():
        return torch.cat([to_pipeline_space(pipe.vae, pipe.vae.encode(chunk).latent_dist.mean.float())
                          for chunk in pixels.split(64)])


def teacher(vae: Any, latents: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The VAE's pictures of pipeline-space latents, in [-1, 1] (what decoder="full" shows)."""
    from ..core.decode import from_pipeline_space

    with torch.no_grad():
        return torch.cat([vae.decode(from_pipeline_space(vae, chunk.float()), return_dict=False)[0].clamp(-1, 1)
                          for chunk in latents.split(batch)])


def as_uint8(pictures: torch.Tensor) -> torch.Tensor:
    """[-1, 1] pictures rounded to 0..255 as decode.to_pil rounds them."""
    return ((pictures.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor()


def mean_error(student: Any, latents: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error of 255 between the student's and the teacher's 8-bit pictures."""
    with torch.no_grad():
        made = torch.cat([student.decode(chunk, return_dict=False)[0] for chunk in latents.split(256)])
    return float((as_uint8(made) - as_uint8(target)).abs().mean())


def train(student: Any, latents: torch.Tensor, target: torch.Tensor, steps: int, batch: int = 64, lr: float = 2e-3,
          seed: int = 0, log: Any = print) -> list[tuple[int, float]]:
    """Adam on the L1 error; the learning rate falls on a cosine to zero."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))
    losses, running = [], 0.0
    student.train()
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(latents), (batch,), generator=generator)
        loss = (student(latents[pick]) - target[pick]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % 100 == 0 or step == steps:
            losses.append((step, running / (step % 100 or 100)))
            log(f"step {step}/{steps}: L1 {losses[-1][1] * 127.5:.2f} of 255")
            running = 0.0
    student.eval()
    return losses


def frame_cost(pipe: Any, student: Any, rounds: int = 200) -> dict[str, float]:
    """Milliseconds for one frame (and for a step's x0 + x_t pair) beside one guided UNet step."""
    from ..core.trace import trace

    traj = trace(pipe, "big red circle on the left, white background", steps=30, guidance=5.0, seed=0)
    step_ms = 1000 * float(np.median([s.seconds for s in traj.steps]))
    one = traj.latents_for(15, "x0")[None].float()
    two = torch.stack([traj.latents_for(15, "x0"), traj.latents_for(15, "xt")]).float()

    def timed(z: torch.Tensor) -> float:
        with torch.no_grad():
            for _ in range(10):
                student.decode(z, return_dict=False)
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                student.decode(z, return_dict=False)
                times.append(time.perf_counter() - start)
        return 1000 * float(np.median(times))

    frame, pair = timed(one), timed(two)
    return {"step_ms": step_ms, "frame_ms": frame, "pair_ms": pair, "frame_over_step": frame / step_ms}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--out", default=None, help=f"where to write the decoder (default: MODEL/{TINY_FOLDER})")
    parser.add_argument("--runs", type=int, default=96, help="training runs of the model (30 steps each)")
    parser.add_argument("--renders", type=int, default=2048, help="rendered pictures")
    parser.add_argument("--held-out", type=int, default=24, help="held-out runs for the figures")
    parser.add_argument("--steps", type=int, default=3000, help="training steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a smoke run of seconds (tests)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.tiny:
        args.runs, args.renders, args.held_out, args.steps = 2, 32, 1, 20
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from ..core.loading import EMBEDDED_MODEL, load_pipeline
    from ..core.tiny_decoder import TinyDecoder

    folder = Path(args.model) if args.model else EMBEDDED_MODEL
    out = Path(args.out) if args.out else folder / TINY_FOLDER
    pipe = load_pipeline(None if args.model is None else str(folder), device="cpu")
    started = time.perf_counter()
    x0, xt = run_latents(pipe, args.runs, seed=args.seed + 100_000)
    clean = render_latents(pipe, args.renders, seed=args.seed + 200_000)
    generator = torch.Generator().manual_seed(args.seed)
    nearby = clean + 0.3 * torch.randn(clean.shape, generator=generator)
    latents = torch.cat([x0, xt, clean, nearby])
    target = teacher(pipe.vae, latents)
    made = time.perf_counter() - started
    print(f"{len(latents)} latents and their VAE pictures in {made:.0f} s")

    student = TinyDecoder(latent_channels=latents.shape[1])
    losses = train(student, latents, target, args.steps, seed=args.seed)
    trained = time.perf_counter() - started - made

    held_x0, held_xt = run_latents(pipe, args.held_out, seed=args.seed + 300_000)
    figures = {
        "x0_mae": mean_error(student, held_x0, teacher(pipe.vae, held_x0)),
        "xt_mae": mean_error(student, held_xt, teacher(pipe.vae, held_xt)),
        "final_x0_mae": mean_error(student, held_x0[29::30], teacher(pipe.vae, held_x0[29::30])),
        **frame_cost(pipe, student),
    }
    print(json.dumps(figures, indent=1))
    student.save_pretrained(out)
    record = {"command": "python -m nbdiffuse.shapes.distil_tiny " + " ".join(argv),
              "latents": len(latents), "training_runs": args.runs, "renders": args.renders,
              "held_out_runs": args.held_out, "steps": args.steps, "data_seconds": round(made, 1),
              "train_seconds": round(trained, 1), "threads": args.threads,
              "parameters": sum(p.numel() for p in student.parameters()),
              "loss": [[s, round(v * 127.5, 3)] for s, v in losses],
              **{key: round(value, 4) for key, value in figures.items()}}
    (out / "distillation.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
