"""What saved pictures cost in a .nbd file, and how true they are.

For each run: bytes per step of the stored frames (x0 and x_t), the codec each frame got
(core/image_codec.py picks per frame), the mean absolute error of a loaded run's frames against
decoder="full" on the same pipeline (bar: 4 of 255 for x0), and the time of traj.save with and
without frames. Runs: the embedded shapes model (64 x 64) and a random-weight tiny SD pipeline
(noise-like pictures, the hardest case for a lossy codec). --pictures FILE... also encodes each
given picture at 512 x 512 and 1024 x 1024 (a centre square, resized), as an estimate for SD 1.5
and SDXL frames: bytes, codec, error and encode time.

    python benchmarks/saved_frames.py [--steps 30] [--rounds 3] [--threads 1] [--pictures a.jpg b.png]
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.image_codec import decode_picture, encode_picture
from nbdiffuse.testing import tiny_sd_pipeline


def mean_error(a, b) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


def kind(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        lossless = image.format == "WEBP" and b"VP8L" in data[12:16]
        return "PNG" if image.format == "PNG" else "WebP lossless" if lossless else image.format.replace("WEBP", "WebP")


def measure_run(name: str, pipe, prompt: str, rounds: int, **options) -> None:
    folder = Path(tempfile.mkdtemp())
    with_frames, without = [], []
    for _ in range(rounds):
        traj = nbd.trace(pipe, prompt, **options)  # a fresh run: nothing in its decode cache
        start = time.perf_counter()
        traj.save(folder / "bare.nbd", frames=False)
        without.append(time.perf_counter() - start)
        start = time.perf_counter()
        traj.save(folder / "run.nbd")
        with_frames.append(time.perf_counter() - start)
    loaded = nbd.Trajectory.load(folder / "run.nbd")
    n = len(traj)
    print(f"\n{name}: {n} steps, {traj.params['width']} x {traj.params['height']}")
    print(f"  file {(folder / 'run.nbd').stat().st_size / 1024:.1f} KiB with frames, "
          f"{(folder / 'bare.nbd').stat().st_size / 1024:.1f} KiB without")
    print(f"  save: {statistics.median(with_frames):.3f} s with frames, {statistics.median(without):.3f} s without "
          f"(medians of {rounds})")
    for view in ("x0", "xt"):
        stored = [loaded.saved_frame(k, view) for k in range(n)]
        own = [data for k, data in enumerate(stored) if view == "x0" or data is not loaded.saved_frame(k, "x0")]
        errors = [mean_error(loaded.image(k, view), traj.image(k, view, decoder="full")) for k in range(n)]
        approx = [mean_error(loaded.image(k, view, decoder="approx"), traj.image(k, view, decoder="full"))
                  for k in range(n)]
        print(f"  {view}: {sum(map(len, own)) / n:,.0f} B a step ({dict(Counter(map(kind, own)))}); error against "
              f"the full VAE mean {np.mean(errors):.2f}, worst frame {max(errors):.2f} (approx: mean "
              f"{np.mean(approx):.1f})")


def measure_picture(path: str) -> None:
    with Image.open(path) as image:
        image = image.convert("RGB")
    side = min(image.size)
    square = image.crop(((image.width - side) // 2, (image.height - side) // 2,
                         (image.width + side) // 2, (image.height + side) // 2))
    for size in (512, 1024):
        picture = square.resize((size, size), Image.LANCZOS)
        start = time.perf_counter()
        data = encode_picture(picture)
        seconds = time.perf_counter() - start
        print(f"  {Path(path).name} at {size}: {len(data) / 1024:.1f} KiB ({kind(data)}), error "
              f"{mean_error(decode_picture(data), picture):.2f}, encoded in {seconds * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pictures", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    measure_run("embedded shapes model", nbd.load_pipeline(), "big red circle on the left, white background",
                args.rounds, steps=args.steps, guidance=5.0, seed=0)
    measure_run("embedded shapes model", nbd.load_pipeline(), "small yellow star at the top, sky background",
                args.rounds, steps=args.steps, guidance=5.0, seed=1)
    tiny = tiny_sd_pipeline()
    measure_run("tiny SD, random weights", tiny, "a red circle", args.rounds, steps=args.steps, guidance=3.0, seed=1)
    measure_run("tiny SD, random weights", tiny, "a red circle", args.rounds, steps=args.steps, guidance=3.0, seed=1,
                height=64, width=64)
    if args.pictures:
        print("\npictures (estimates for SD 1.5 / SDXL frames):")
        for path in args.pictures:
            measure_picture(path)


if __name__ == "__main__":
    main()
