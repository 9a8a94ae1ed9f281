"""A run's overlays as bytes: a word's attention map or the guidance map, per step, over the latent grid.

For what shows them (the Explorer's overlays.js, where they travel as widget state so that a saved
notebook keeps them; the HTML export, core/exports.py): per step, one byte per latent pixel per word
(`overlay_maps`), scaled by that word's largest value over the run (`overlay_scale`), so that a map's
growth from step to step shows; the guidance map the same way (`guidance_maps`, `guidance_scale`).
While a run goes, each live frame carries its step's word maps (`live_word_maps`) and guidance map
(`live_guidance_map`), scaled by the largest value so far, on a grid of at most 64 a side (`live_grid`).
A run traced without attention maps sends no words; a run whose guidance is a model input (Flux-dev,
LCM) or ran without guidance sends no guidance maps, and `overlay_note` says why. An inpainting run sends its
mask (`mask_map`: 255 where the model repaints, over `mask_grid`, at most 64 a side), the same at every step.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .guidance_map import guidance_map
from .inpaint import WHITE

LIVE_SIDE = 64  # a live frame's maps: at most this many positions a side (live_grid)

EMPTY = {"overlay_words": [], "overlay_maps": [], "overlay_scale": [], "overlay_grid": [0, 0],
         "guidance_maps": [], "guidance_scale": 0.0, "overlay_note": "", "mask_map": b"", "mask_grid": [0, 0]}


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


def live_grid(maps: torch.Tensor) -> torch.Tensor:
    """(..., h, w) maps as a live frame carries them: averaged down by a whole factor to at most LIVE_SIDE
    positions a side (SDXL's 128 x 128 latent grid: 64 x 64, a quarter of the bytes per frame; the overlay
    is drawn smooth over the frame), as they are on smaller grids."""
    h, w = maps.shape[-2:]
    factor = math.ceil(max(h, w) / LIVE_SIDE)
    if factor <= 1:
        return maps
    size = (math.ceil(h / factor), math.ceil(w / factor))
    flat = maps.reshape(-1, 1, h, w).float()
    return F.adaptive_avg_pool2d(flat, size).reshape(*maps.shape[:-2], *size)


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
        top = live_grid(_per_word(step.attention, known)).amax(dim=(1, 2))
        seen["top"] = top if "top" not in seen else torch.maximum(seen["top"], top)
    seen["upto"] = max(seen.get("upto", 0), len(steps))
    maps = live_grid(_per_word(steps[-1].attention, known))
    return {"words": list(known["words"]), "grid": list(maps.shape[-2:]),
            "maps": _bytes(maps[None], seen["top"][None, :, None, None])[0],
            "scale": [round(float(v), 6) for v in seen["top"]]}


def live_guidance_map(traj: Any, k: int, seen: dict) -> dict[str, Any] | None:
    """Step k's guidance map while the run goes (a live frame's overlay), as `live_word_maps` gives word maps:
    the grid, the map as bytes scaled by the largest value of the steps up to k, and that value; "map" is
    empty bytes where step k ran without an unconditional prediction (guidance 1 set live, or a model that
    takes guidance as an input: then every step's is, and the result is None). `seen`: the caller's dict,
    one per run."""
    if k >= len(traj.steps):
        return None
    step_map = None
    for j in range(seen.get("upto", 0), k + 1):
        try:
            step_map = live_grid(guidance_map(traj, j))
        except ValueError:  # this step has no unconditional prediction
            step_map = None
            continue
        top = step_map.max()
        seen["top"] = top if "top" not in seen else torch.maximum(seen["top"], top)
        seen["grid"] = [int(n) for n in step_map.shape[-2:]]
    if seen.get("upto", 0) > k:  # read before (frames come in order; a repeat reads it again)
        try:
            step_map = live_grid(guidance_map(traj, k))
        except ValueError:
            step_map = None
    seen["upto"] = max(seen.get("upto", 0), k + 1)
    if "top" not in seen:
        return None
    if step_map is None:
        return {"grid": seen["grid"], "map": b"", "scale": 0.0}
    return {"grid": seen["grid"], "map": _bytes(step_map[None], seen["top"])[0], "scale": round(float(seen["top"]), 6)}


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
    state.update(mask_map(traj))
    return state


def mask_map(traj: Any) -> dict[str, Any]:
    """An inpainting run's mask (traj.mask; a run's before it starts) as overlay bytes: 255 where the model
    repaints, 0 where the picture is kept, on a grid of at most LIVE_SIDE a side (nearest pixel); none for other
    runs."""
    mask = getattr(traj, "mask", None)
    if mask is None:
        return {"mask_map": b"", "mask_grid": [0, 0]}
    w, h = mask.size
    scale = min(1.0, LIVE_SIDE / max(w, h))
    small = mask.convert("L").resize((max(1, round(w * scale)), max(1, round(h * scale))), resample=0)  # nearest
    return {"mask_map": small.point(lambda v: 255 if v >= WHITE else 0).tobytes(), "mask_grid": [small.height, small.width]}
