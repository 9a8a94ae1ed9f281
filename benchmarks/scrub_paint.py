"""Scrubbing in the browser: slider moved -> the new frame painted (goal <= 16 ms median in Chromium).

Runs the JupyterLab browser test of the Explorer (tests/browser/test_browser_lab.py: JupyterLab on
127.0.0.1, headless Chromium, the quickstart notebook, a 120-step run) `--rounds` times. Each round
moves the scrubber 60 times by input events, at random moments of the display frame, and times
each move until the first task after the paint that shows it; the browser's own floor is the same
wait with nothing changed, taken between the moves (so both sides see the same page and load).
It also times real mouse drags: from each input event to its frame painted. The kernel plays no
part: the frames live in the page.

    python benchmarks/scrub_paint.py [--rounds 3]

Needs what the browser tests need (the dev extras and a Chromium: see the README). Each round takes ~40 s.
Latencies, not timed assertions: the test records them (build/browser_metrics.json) and asserts
only that the frame changed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ROOT / "build" / "browser_metrics.json"
TEST = "tests/browser/test_browser_lab.py::test_lab_live_run_scrub_guidance_and_stop"
KEYS = ("lab_scrub_paint_ms", "lab_scrub_drag_ms")  # what that test records in METRICS


def one_round() -> dict:
    if METRICS.exists():  # drop this test's old figures only: the file keeps the other tests' too
        kept = {key: value for key, value in json.loads(METRICS.read_text()).items() if key not in KEYS}
        METRICS.write_text(json.dumps(kept, indent=2))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the browser test failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    metrics = json.loads(METRICS.read_text())
    missing = [key for key in KEYS if key not in metrics]
    if missing:
        raise SystemExit(f"the browser test passed but recorded no {', '.join(missing)} in {METRICS.name}")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of the browser test (60 moves each)")
    args = parser.parse_args()
    paint, floor, drag = [], [], []
    for i in range(args.rounds):
        metrics = one_round()
        p, d = (metrics[key] for key in KEYS)
        paint.append(p["median_ms"])
        floor.append(p["median_floor_ms"])
        drag.append(d["median_ms"])
        print(f"round {i + 1}: slider moved -> frame painted median {p['median_ms']:.1f} ms (max {p['max_ms']:.1f}; "
              f"the browser's floor {p['median_floor_ms']:.1f} ms; the input handler itself "
              f"{p['median_draw_ms']:.1f} ms; {p['changed']}/{p['samples']} moves changed the picture); "
              f"mouse drag median {d['median_ms']:.1f} ms (max {d['max_ms']:.1f})")
    print(f"median of {args.rounds} rounds: frame painted {statistics.median(paint):.1f} ms after the slider moved  "
          f"goal <= 16 ms; the floor {statistics.median(floor):.1f} ms, so the scrub itself adds "
          f"{statistics.median(p - f for p, f in zip(paint, floor)):.1f} ms "
          f"(x{statistics.median(p / f for p, f in zip(paint, floor)):.2f} of the floor); "
          f"mouse drag {statistics.median(drag):.1f} ms")


if __name__ == "__main__":
    main()
