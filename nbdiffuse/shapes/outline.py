"""Outlines of the shapes world as a person would draw them: white strokes on black, 64x64.

What the embedded model's drawable ControlNet (`nbd.load_pipeline(controlnet="outline")`) reads.
A drawn outline is never the exact polygon: the whole figure sits a little off and a little too big
or small, its edges wobble, and the pen's width varies. `training_pair` gives a rendered picture and
the outline of its object, placed by the renderer's own draws (render.placement).
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
from PIL import Image, ImageDraw

from .grammar import Caption, SeedLike, _rng, as_caption, random_caption
from .render import ANCHORS, IMAGE_SIZE, SIZE_RANGES, SUPERSAMPLE, _draw, placement, shape_polygon

STROKE_PX = (1.2, 2.6)  # pen width in pixels of the 64x64 picture
OFFSET_PX = 0.8  # std of the whole figure's misplacement
SCALE = (0.9, 1.1)  # the figure drawn this much too small or too big
WOBBLE_PX = 0.45  # std of each drawn point's wobble
SEGMENT_PX = 3.0  # a drawn edge is made of pieces about this long


def _hand_points(points: list[tuple[float, float]], rng: np.random.Generator) -> list[tuple[float, float]]:
    """A closed polygon as a hand draws it: edges cut into short pieces, each point wobbling, the
    wobble smoothed along the stroke (a pen drifts, it does not jump)."""
    out = []
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        pieces = max(1, int(math.hypot(x1 - x0, y1 - y0) / SEGMENT_PX))
        out += [(x0 + (x1 - x0) * j / pieces, y0 + (y1 - y0) * j / pieces) for j in range(pieces)]
    noise = rng.normal(0.0, WOBBLE_PX, (len(out), 2))
    smooth = (noise + np.roll(noise, 1, axis=0) + np.roll(noise, -1, axis=0)) / math.sqrt(3)
    return [(x + dx, y + dy) for (x, y), (dx, dy) in zip(out, smooth)]


def draw_outline(shape: str, cx: float, cy: float, width: float, seed: SeedLike = None) -> Image.Image:
    """The outline of `shape` whose box is centred at (cx, cy), `width` pixels wide, drawn by hand
    (jitter from `seed`): a 64x64 RGB picture, white strokes on black."""
    rng = _rng(seed)
    scale = rng.uniform(*SCALE)
    dx, dy = rng.normal(0.0, OFFSET_PX, 2)
    points = _hand_points(shape_polygon(shape, cx + dx, cy + dy, width * scale), rng)
    s = SUPERSAMPLE
    canvas = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), (0, 0, 0))
    scaled = [(x * s, y * s) for x, y in points]
    pen = max(1, round(rng.uniform(*STROKE_PX) * s))
    ImageDraw.Draw(canvas).line(scaled + scaled[:1], fill=(255, 255, 255), width=pen, joint="curve")
    return canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def outline(shape: str = "circle", position: str = "in the center", size: str = "big",
            seed: SeedLike = None) -> Image.Image:
    """A hand-drawn outline of `shape` at `position` ("on the left", ...) of `size` ("small", "big"):
    what a person would draw on the Explorer's sketch pad. The same seed gives the same drawing."""
    caption = Caption(shape=shape, position=position, size=size)
    rng = _rng(seed)
    low, high = SIZE_RANGES[size]
    ax, ay = ANCHORS[position]
    return draw_outline(caption.shape, ax, ay, rng.uniform(low, high), rng)


def training_pair(caption: Union[str, Caption, None] = None,
                  seed: SeedLike = None) -> tuple[Caption, Image.Image, Image.Image]:
    """(the complete caption, its rendered 64x64 picture, a hand-drawn outline of its object)."""
    rng = _rng(seed)
    full = (random_caption(rng) if caption is None else as_caption(caption)).complete(rng)
    state = rng.bit_generator.state
    cx, cy, width = placement(full, rng)
    rng.bit_generator.state = state  # the picture draws the same placement again
    picture = _draw(full, rng)
    return full, picture, draw_outline(full.shape, cx, cy, width, rng)
