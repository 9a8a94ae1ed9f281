"""What an edge map (core/edges.py, the Explorer's "Edges of a picture…") costs beside one step of the
embedded model, and what the Explorer's strength strip adds to each live frame message.

Side by side in one run, 1 torch thread: the median time of edge_map on a 64 x 64 and a 512 x 512
picture, and of one plain step of the embedded model (a 1-step trace, guidance 5): printed as ratios.
The strip's figures travel in each live frame message of a ControlNet run ("cs": one number per step
made): its bytes at the last step of a 30-step run.

    python benchmarks/edge_map.py [--repeats 9]

Measured 2026-12-06 (2 shared CPU cores): a 1-step run 148.2 ms; edge map 64 px 0.78 ms (0.005 of
it), 512 px 241.3 ms (1.63 of it); the strip's figures at step 30 of 30: 283 bytes per message.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from PIL import Image, ImageFilter


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import nbdiffuse as nbd
    from nbdiffuse.core.edges import edge_map

    rng = np.random.default_rng(0)
    small = nbd.trace(nbd.load_pipeline(), "big red star on the left, blue background", steps=10, seed=0).image()
    large = Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(3))
    pipe = nbd.load_pipeline()
    step = median_seconds(lambda: nbd.trace(pipe, "red", steps=1, guidance=5), args.repeats)
    e64 = median_seconds(lambda: edge_map(small), args.repeats)
    e512 = median_seconds(lambda: edge_map(large, width=3), args.repeats)
    print(f"one embedded step {step * 1000:.1f} ms; edge map 64 px {e64 * 1000:.2f} ms "
          f"({e64 / step:.3f} of a step), 512 px {e512 * 1000:.1f} ms ({e512 / step:.2f} of a step)")
    strip = json.dumps([round(float(v), 4) for v in rng.uniform(10, 200, 30)])
    print(f"strength strip in a live frame message at step 30 of 30: {len(strip)} bytes")


if __name__ == "__main__":
    main()
