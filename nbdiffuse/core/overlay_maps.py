"""A run's overlays as bytes: a word's attention map or the guidance map, per step, over the latent grid.

For what shows them (the Explorer's overlays.js, where they travel as widget state so that a saved
notebook keeps them; the HTML export, core/exports.py): per step, one byte per latent pixel per word
(`overlay_maps`), scaled by that word's largest value over the run (`overlay_scale`), so that a map's
growth from step to step shows; the guidance map the same way (`guidance_maps`, `guidance_scale`).
While a run goes, each live frame carries its step's word maps (`live_word_maps`), scaled by the
largest value so far. A run traced without attention maps sends no words; a run whose guidance is a
model input (Flux-dev, LCM) or ran without guidance sends no guidance maps, and `overlay_note` says why.
"""
from __future__ import annotations

from typing import Any

import torch

EMPTY = {"overlay_words": [], "overlay_maps": [], "overlay_scale": [], "overlay_grid": [0, 0],
         "guidance_maps": [], "guidance_scale": 0.0, "overlay_note": ""}


def _bytes(stack: torch.Tensor, top: torch.Tensor) -> list[bytes]:
    """(steps, ..., h, w) float maps scaled by `top` (broadcast) to 0..255, one bytes object per step."""
    scaled = (stack / top.clamp(min=1e-12) * 255).round().clamp(0, 255).to(torch.uint8)
    return [bytes(step.contiguous().numpy().tobytes()) for step in scaled]


def word_maps(traj: Any) -> dict[str, Any]:
    """The overlay traits of a run's attention maps (empty words when it has none)."""
    known = traj.params.get("attention")
    steps = [step for step in traj if step.attention is not None]
    if not known or not steps or len(steps) != len(traj):
        return {"overlay_words": [], "overlay_maps": [], "overlay_scale": []}
    words = known["words"]
    stack = torch.stack([_per_word(step.attention, known) for step in traj])  # (steps, words, h, w)
    top = stack.amax(dim=(0, 2, 3))  # each word's largest value over the run
    return {"overlay_words": list(words), "overlay_maps": _bytes(stack, top[None, :, None, None]),
            "overlay_scale": [round(float(v), 6) for v in top], "overlay_grid": list(stack.shape[-2:])}


def _per_word(attention: torch.Tensor, known: dict) -> torch.Tensor:
    """A step's (tokens, h, w) maps -> (words, h, w): each word's tokens summed (`known`: params["attention"])."""
    maps, rows = attention.float(), known["rows"]
    return torch.stack([maps[[r for r, w in enumerate(rows) if w == i]].sum(0) for i in range(len(known["words"]))])


def live_word_maps(traj: Any, k: int, seen: dict) -> dict[str, Any] | None:
    """Step k's word maps while the run goes (a live frame's overlay; None for a run without maps): the words,
    the grid, the step's maps as bytes scaled by each word's largest value up to step k (as `word_maps` scales
    by the whole run's, so a map's growth shows), and those largest values. `seen`: the caller's dict, one per
    run, that keeps the largest values of the steps read so far (live frames come in order)."""
    known = traj.params.get("attention")
    steps = traj.steps[:k + 1]
    if not known or not steps or any(step.attention is None for step in steps[seen.get("upto", 0):]):
        return None
    for step in steps[seen.get("upto", 0):]:
        top = _per_word(step.attention, known).amax(dim=(1, 2))
        seen["top"] = top if "top" not in seen else torch.maximum(seen["top"], top)
    seen["upto"] = max(seen.get("upto", 0), len(steps))
    maps = _per_word(steps[-1].attention, known)
    return {"words": list(known["words"]), "grid": list(maps.shape[-2:]),
            "maps": _bytes(maps[None], seen["top"][None, :, None, None])[0],
            "scale": [round(float(v), 6) for v in seen["top"]]}


def guidance_maps(traj: Any) -> dict[str, Any]:
    """The overlay traits of a run's guidance maps, or a note saying why it has none."""
    try:
        stack = torch.stack([traj.guidance_map(k) for k in range(len(traj))])
    except ValueError as exc:  # guidance is a model input, or a step ran without guidance
        return {"guidance_maps": [], "guidance_scale": 0.0, "overlay_note": f"no guidance overlay: {exc}"}
    top = stack.max()
    return {"guidance_maps": _bytes(stack, top), "guidance_scale": round(float(top), 6),
            "overlay_grid": list(stack.shape[-2:])}


def overlay_state(traj: Any) -> dict[str, Any]:
    """Every overlay trait for `traj` (None or an empty run: none)."""
    state = dict(EMPTY)
    if traj is None or not len(traj):
        return state
    state.update(guidance_maps(traj))
    state.update(word_maps(traj))
    return state
