"""Compare view state: two runs side by side under one scrubber, a heatmap per pair and the difference curve.

Everything the browser needs goes into widget state at once (a few small frames per step), so the
shared scrubber moves without a kernel round trip, as the main scrubber does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core import compare as core_compare
from .frames import VIEWS, encode_live, encode_lossless
from . import run_words

HEAT_SIDE = 128  # px; the heatmap is a coarse picture, the browser scales it to the pane


def compare_state(a: Any, b: Any, label_a: str, label_b: str, frames_of: Any,
                  view: str | None = None) -> tuple[Any, dict]:
    """(core Comparison, trait values) for runs a and b; `frames_of(traj)` gives its per-step (x0, xt) frames.

    view None: x0 when both runs have it, else x_t (a run of a pipeline outside the known families)."""
    comparison = core_compare(a, b, view)
    view = comparison.view
    xa, xb = (frames_of(traj)[VIEWS.index(view)] for traj in (a, b))
    heat = [encode_lossless(comparison.heatmap(i, size=HEAT_SIDE)) for i in range(len(comparison))]
    diffs = run_words.differences(a.params, b.params)  # the captions say what differs, not what is shared
    info = {
        "a": a.id, "b": b.id, "label_a": label_a, "label_b": label_b,
        "pairs": [list(p) for p in comparison.pairs],
        "difference": [round(d, 5) for d in comparison.difference],
        "locks_in_at": comparison.locks_in_at,
        "prompt_a": a.params.get("prompt", ""), "prompt_b": b.params.get("prompt", ""),
        "caption_a": run_words.side_words(diffs, 0), "caption_b": run_words.side_words(diffs, 1),
        "settings_a": run_words.settings_words(a.params), "settings_b": run_words.settings_words(b.params),
        "view": view,
    }
    state = {
        "comparison": info,
        "compare_a": [xa[ka] for ka, _ in comparison.pairs],
        "compare_b": [xb[kb] for _, kb in comparison.pairs],
        "compare_heat": heat,
    }
    return comparison, state


def empty_state() -> dict:
    return {"comparison": {}, "compare_a": [], "compare_b": [], "compare_heat": []}


def what_if_frame(traj: Any, k: int, guidance: float, decoder: str, pag_scale: float | None = None) -> bytes:
    """The re-weighed x0 at step k (a PAG run's PAG too), lossless: decoder "approx" (latent size) or "tiny"
    while the what-if slider moves, "full" where it rests."""
    picture = traj.guided_image(k, guidance, decoder=decoder, size="latent" if decoder == "approx" else "output",
                                pag_scale=pag_scale)
    return encode_lossless(np.asarray(picture.convert("RGB")))


__all__ = ["compare_state", "empty_state", "what_if_frame", "encode_live"]
