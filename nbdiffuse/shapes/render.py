"""Render captions of the shapes world as 64x64 RGB images with Pillow.

Each image is drawn SUPERSAMPLE times larger and box-filtered down, so edges are antialiased by
exact area coverage. Place and size get a small random jitter from the seed; shapes stay upright
(the evaluator reads shape from geometry, and an upright star/triangle is what "star"/"triangle"
mean to a reader).
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

from .grammar import ATTRIBUTES, VOCABULARY, Caption, SeedLike, _rng, as_caption, caption_text, random_caption

IMAGE_SIZE = 64
SUPERSAMPLE = 4

# Object colors: saturated and far apart, so the nearest-palette rule of the evaluator has room.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 30),
    "green": (35, 160, 55),
    "blue": (35, 70, 225),
    "purple": (140, 45, 185),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "sky": (140, 200, 245),
}

# Object center (x, y) in pixels for each position; a quarter of the image from the edges.
ANCHORS: dict[str, tuple[float, float]] = {
    "on the left": (16.0, 32.0),
    "on the right": (48.0, 32.0),
    "at the top": (32.0, 16.0),
    "at the bottom": (32.0, 48.0),
    "in the center": (32.0, 32.0),
}
# Object width in pixels (bounding box) for each size. The gap between the ranges is what lets the
# evaluator tell sizes apart on blurry images; the big range stays small enough that a jittered
# big object at an anchor stays inside the image.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (11.0, 15.0), "big": (24.0, 28.0)}
POSITION_JITTER = 2.5  # pixels, uniform in [-j, j] on each axis

STAR_INNER_RATIO = 0.5  # inner / outer radius; fatter than a classic star so small stars survive 64x64


def shape_polygon(shape: str, cx: float, cy: float, width: float) -> list[tuple[float, float]]:
    """Vertices of `shape` whose bounding box is centered at (cx, cy) and is `width` wide.

    A circle is returned as a fine polygon so every shape goes through one drawing path.
    """
    if shape == "square":
        h = width / 2
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "circle":
        r = width / 2
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 96, endpoint=False)]
    if shape == "triangle":  # equilateral, pointing up
        height = width * math.sqrt(3) / 2
        return [(cx, cy - height / 2), (cx + width / 2, cy + height / 2), (cx - width / 2, cy + height / 2)]
    if shape == "star":  # five points, one pointing up
        outer = width / (2 * math.cos(math.radians(18)))
        height = outer * (1 + math.cos(math.radians(36)))
        center_y = cy - height / 2 + outer  # the star's center sits above its bounding box's center
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else outer * STAR_INNER_RATIO
            angle = math.radians(-90 + 36 * k)
            points.append((cx + radius * math.cos(angle), center_y + radius * math.sin(angle)))
        return points
    raise ValueError(f"shape={shape!r} is not a shape; allowed: {', '.join(sorted(('circle', 'square', 'triangle', 'star')))}")


def placement(caption: Caption, rng: np.random.Generator) -> tuple[float, float, float]:
    """(cx, cy, width) of a complete caption's object in pixels, jittered from `rng` (the renderer's
    draws, in its order; the outlines of nbdiffuse.shapes.outline take the same)."""
    low, high = SIZE_RANGES[caption.size]
    width = rng.uniform(low, high)
    ax, ay = ANCHORS[caption.position]
    cx = ax + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    cy = ay + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    return cx, cy, width


def _draw(caption: Caption, rng: np.random.Generator) -> Image.Image:
    """Draw a complete caption with jitter from `rng`."""
    cx, cy, width = placement(caption, rng)

    s = SUPERSAMPLE
    canvas = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), BACKGROUNDS[caption.background])
    # Pixel centers are at integer + 0.5 in the 64x64 frame; scaling the geometry by s keeps them aligned.
    polygon = [(x * s, y * s) for x, y in shape_polygon(caption.shape, cx, cy, width)]
    ImageDraw.Draw(canvas).polygon(polygon, fill=COLORS[caption.color])
    return canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def render_sample(caption: Union[str, Caption] = "", seed: SeedLike = None) -> tuple[Caption, Image.Image]:
    """Render a caption; returns (the complete caption that was drawn, the 64x64 RGB image).

    Attributes the caption leaves out are drawn from `seed` first, then the jitter; the same
    caption and seed always give the same image.
    """
    rng = _rng(seed)
    full = as_caption(caption).complete(rng)
    return full, _draw(full, rng)


def render(caption: Union[str, Caption] = "", seed: SeedLike = None) -> Image.Image:
    """Render a caption (text or Caption) as a 64x64 RGB PIL image; see `render_sample`."""
    return render_sample(caption, seed)[1]


def render_array(captions: Sequence[Union[str, Caption]], seeds: Sequence[int]) -> np.ndarray:
    """Render many captions; returns uint8 (N, 64, 64, 3)."""
    if len(captions) != len(seeds):
        raise ValueError(f"captions and seeds must have one entry each; got len(captions)={len(captions)}, "
                         f"len(seeds)={len(seeds)}")
    out = np.empty((len(captions), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, (caption, seed) in enumerate(zip(captions, seeds)):
        out[i] = np.asarray(render(caption, seed))
    return out


def to_tensor(images: np.ndarray):
    """uint8 (N, H, W, 3) -> float32 torch tensor (N, 3, H, W) in [-1, 1], the VAE's range."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _render_pool_chunk(args) -> tuple[list[Caption], np.ndarray]:
    seed, start, count = args
    captions, images = [], np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(count):
        rng = np.random.default_rng([seed, start + i])  # per-item seed: the pool does not depend on the chunking
        caption = random_caption(rng)
        captions.append(caption)
        images[i] = np.asarray(_draw(caption, rng))
    return captions, images


def render_pool(count: int, seed: int = 0, workers: Optional[int] = None) -> tuple[list[Caption], np.ndarray]:
    """A training pool: `count` random complete captions and their images, uint8 (count, 64, 64, 3).

    Rendering is ~0.2 ms an image; a pool rendered once and reused is what keeps a GPU fed. Item i
    depends only on (seed, i), so the pool is the same for any number of `workers` (processes).
    """
    if count < 1:
        raise ValueError(f"count={count!r} must be >= 1")
    workers = workers if workers is not None else max(1, min(8, (os.cpu_count() or 1) - 1))
    chunk = 2048
    jobs = [(seed, start, min(chunk, count - start)) for start in range(0, count, chunk)]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_render_pool_chunk, jobs)
    else:
        parts = [_render_pool_chunk(job) for job in jobs]
    captions = [c for part, _ in parts for c in part]
    images = np.concatenate([imgs for _, imgs in parts])
    return captions, images


def training_text(caption: Caption, rng: np.random.Generator, omit: float = 0.25,
                  noise: Union[float, Mapping[str, float]] = 0.0) -> str:
    """A text for a complete `caption` as training sees it: each attribute left out with
    probability `omit` (the image then shows one value the text does not pin down, which is what
    "left out" means at sampling time) and a random free word order.

    With `noise` (one rate for every attribute, or a rate per attribute) each attribute is also,
    with its rate, named wrong: another value than the picture shows, as web captions are (see
    `mislabel`). With no noise no extra random numbers are drawn, so the texts are those of a run
    without the option."""
    return training_text_at(caption, rng, omit, noise_rates(noise))


def training_text_at(caption: Caption, rng: np.random.Generator, omit: float, rates: dict[str, float]) -> str:
    """`training_text` with the rates already checked by `noise_rates` (a batch checks them once)."""
    if rates:
        caption = _mislabel_at(caption, rng, rates)
    dropped = [field for field in ("size", "color", "shape", "position", "background") if rng.random() < omit]
    return caption_text(caption.without(*dropped), rng, variation=True)


def noise_rates(noise: Union[float, Mapping[str, float], None]) -> dict[str, float]:
    """{attribute: rate > 0} of a caption noise given as one rate for all five attributes or as
    a rate per attribute ({"shape": 0.05}); ValueError names a wrong attribute or rate."""
    if not noise:
        return {}
    rates = dict(noise) if isinstance(noise, Mapping) else {field: float(noise) for field in ATTRIBUTES}
    for field, rate in rates.items():
        if field not in ATTRIBUTES:
            raise ValueError(f"caption noise names {field!r}; the attributes are {', '.join(ATTRIBUTES)}")
        if not 0 <= rate < 1:
            raise ValueError(f"caption noise {field}={rate} must be a share from 0 to below 1, e.g. 0.05")
    return {field: rate for field, rate in rates.items() if rate > 0}


def mislabel(caption: Caption, rng: np.random.Generator, rate: Union[float, Mapping[str, float]]) -> Caption:
    """`caption` with each attribute, with probability `rate` (one for all, or per attribute as
    in `noise_rates`), replaced by a different value drawn uniformly (the color rule kept: a wrong
    color never equals the background, and the other way round). The picture is not changed: the
    text now says something it does not show."""
    return _mislabel_at(caption, rng, noise_rates(rate))


def _mislabel_at(caption: Caption, rng: np.random.Generator, rates: dict[str, float]) -> Caption:
    values = caption.named
    for field in ("size", "color", "shape", "position", "background"):
        if field not in values or rng.random() >= rates.get(field, 0.0):
            continue
        other = {"color": values.get("background"), "background": values.get("color")}.get(field)
        options = [v for v in VOCABULARY[ATTRIBUTES[field]] if v not in (values[field], other)]
        values[field] = options[int(rng.integers(len(options)))]
    return Caption(**values)
