"""The embedded model's tiny decoder: how true its frames are, and what a frame costs next to a step.

Quality: held-out runs (captions and seeds the distillation never saw, 30 Euler steps, guidance
5), every step, both views: mean absolute error of 255 between decoder="tiny" and decoder="full"
(the VAE), and the approx decoder's for comparison. Goal: <= 4 for the x0 view. And how much a patch
grid shows in the tiny decoder's frames (grid_excess: its error across the edges of its 4 x 4 patches
over its error inside them; 1.0 is none).

Cost: one guided UNet step (both halves of classifier-free guidance, as a run makes them) and one
tiny-decoder frame (and a step's x0 + x_t pair, decoded together as the Explorer does), timed in
interleaved rounds on the same latents; the script prints the median of each round's ratio.
Goal: a frame <= 15% of a guided step on the 2-core CPU.

    python benchmarks/tiny_decoder.py [--runs 24] [--rounds 200] [--threads 2]

Ratios, not timed assertions: nothing here fails on a slow machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import nbdiffuse as nbd
from nbdiffuse.core.pipe_attrs import tiny_decoder
from nbdiffuse.core.families import family_for
from nbdiffuse.shapes import random_caption
from nbdiffuse.shapes.distil_tiny import grid_excess, teacher


def mean_error(traj, view: str, decoder: str) -> list[float]:
    """Per step: mean |decoder - full| of 255 at the output size."""
    errors = []
    for k in range(len(traj)):
        made = np.asarray(traj.image(k, view, decoder=decoder), np.float32)
        full = np.asarray(traj.image(k, view, decoder="full"), np.float32)
        errors.append(float(np.abs(made - full).mean()))
    return errors


def quality(pipe, runs: int, steps: int) -> None:
    per = {(view, decoder): [] for view in ("x0", "xt") for decoder in ("tiny", "approx")}
    latents = {"x0": [], "xt": []}
    for i in range(runs):
        caption = random_caption(seed=900_000 + i, omit=0.2).text()
        traj = nbd.trace(pipe, caption, steps=steps, guidance=5.0, seed=900_000 + i)
        for key in per:
            per[key].append(mean_error(traj, *key))
        for view in latents:
            latents[view] += [traj.latents_for(k, view).float() for k in range(len(traj))]
    tiny = tiny_decoder(pipe)
    for view, frames in latents.items():  # 1.0: no grid; errors across the patches' edges over those inside them
        stack = torch.stack(frames)
        print(f"{view} tiny: patch grid (grid_excess) {grid_excess(tiny, stack, teacher(pipe.vae, stack)):.3f}")
    for (view, decoder), runs_errors in per.items():
        table = np.asarray(runs_errors)  # runs x steps
        print(f"{view} {decoder:6s}: mean error {table.mean():5.2f} of 255 over {table.shape[0]} runs x "
              f"{table.shape[1]} steps; first step {table[:, 0].mean():5.2f}, middle "
              f"{table[:, table.shape[1] // 2].mean():5.2f}, last {table[:, -1].mean():5.2f}")


def cost(pipe, rounds: int) -> None:
    family = family_for(pipe)
    tiny = tiny_decoder(pipe)
    traj = nbd.trace(pipe, "big red circle on the left, white background", steps=30, guidance=5.0, seed=0)
    step = traj[15]
    latents = step.latents.reshape(1, *step.latents.shape[-3:])
    one = traj.latents_for(15, "x0")[None].float()
    pair = torch.stack([traj.latents_for(15, "x0"), traj.latents_for(15, "xt")]).float()
    with torch.no_grad():
        cond = family.encode("big red circle on the left, white background", "", None)

        def timed(fn) -> float:
            began = time.perf_counter()
            fn()
            return time.perf_counter() - began

        def unet():
            family.predict(latents, torch.tensor(step.timestep), cond, True, guidance=5.0)

        for _ in range(5):
            unet(), tiny.decode(pair, return_dict=False)
        frame_ratios, pair_ratios, steps_ms, frames_ms = [], [], [], []
        for i in range(rounds):
            order = (unet, "one", "two") if i % 2 == 0 else ("two", "one", unet)
            times = {}
            for what in order:
                if what is unet:
                    times["step"] = timed(unet)
                else:
                    z = one if what == "one" else pair
                    times[what] = timed(lambda z=z: tiny.decode(z, return_dict=False))
            frame_ratios.append(times["one"] / times["step"])
            pair_ratios.append(times["two"] / times["step"])
            steps_ms.append(1000 * times["step"])
            frames_ms.append(1000 * times["one"])
    print(f"guided step {statistics.median(steps_ms):.1f} ms, tiny frame {statistics.median(frames_ms):.2f} ms "
          f"(medians of {rounds} interleaved rounds, {torch.get_num_threads()} torch threads)")
    print(f"tiny frame / guided step: {statistics.median(frame_ratios):.3f} (goal <= 0.15); "
          f"x0 + x_t pair / guided step: {statistics.median(pair_ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=24, help="held-out runs for the quality figures")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=200, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the 2-core CPU: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = nbd.load_pipeline(device="cpu")
    if tiny_decoder(pipe) is None:
        raise SystemExit("this installation's embedded model has no tiny decoder (nbdiffuse/shapes/model/tiny_decoder)")
    cost(pipe, args.rounds)
    quality(pipe, args.runs, args.steps)


if __name__ == "__main__":
    main()
