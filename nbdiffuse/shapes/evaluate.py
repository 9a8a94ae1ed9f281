"""Score images of the shapes world against captions, from geometry and color only (no network).

The reading of an image, step by step (`measure`):
  1. background: the median color of the 2-pixel border, named by the nearest background color;
  2. object: pixels far from that color. The threshold is half the object's contrast (its
     strongest pixels), so a soft or blurred edge is cut where the sharp edge would be;
     the largest connected blob is the object, noise specks are dropped;
  3. color: the median of the object's inner pixels (away from the blended edge), nearest palette
     color or blend of a palette color with the background (washed-out colors);
  4. position: the object's centroid, nearest position anchor;
  5. size: the bounding box's extent sqrt(width * height), one threshold between the two size
     ranges. Not the pixel area: a star covers 0.4 of its box and a square all of it, so areas of
     a big star and a small square overlap, while box extents do not;
  6. shape: the vertical skewness of the mass (an upright triangle is bottom-heavy, the other
     shapes are near symmetric), the share of the bounding box the object fills (square 1.0,
     circle 0.79, star 0.5) and its solidity, area over convex hull area (a star's notches make
     it ~0.7, the other shapes are convex).
These features were chosen because they survive blur and noise: see tests/shapes/test_render_evaluate.py.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .grammar import ATTRIBUTES, Caption, as_caption
from .render import ANCHORS, BACKGROUNDS, COLORS, IMAGE_SIZE, SIZE_RANGES

# Between the widest small object and the narrowest big one (a big triangle is 0.87 as tall as wide).
SIZE_THRESHOLD = math.sqrt(SIZE_RANGES["small"][1] * SIZE_RANGES["big"][0] * math.sqrt(3) / 2)
# An object whose strongest pixels differ from the background by less than this is "no object".
MIN_CONTRAST = 40.0

ImageLike = Union[Image.Image, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What `measure` reads from an image. Attributes are None where no object was found."""

    background: str
    color: Optional[str]
    shape: Optional[str]
    position: Optional[str]
    size: Optional[str]
    # The raw features behind the attributes, for debugging and for tuning thresholds.
    contrast: float
    centroid: tuple[float, float]
    extent: float
    fill: float
    solidity: float
    skew: float

    @property
    def caption(self) -> Caption:
        """The attributes as a Caption (object attributes left out where no object was found)."""
        color = self.color if self.color != self.background else None
        return Caption(size=self.size, color=color, shape=self.shape, position=self.position, background=self.background)


def _as_array(image: ImageLike) -> np.ndarray:
    """Image -> float (64, 64, 3) in 0..255. Other sizes are resampled, so a 512x512 render can be scored."""
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"image has shape {array.shape}; expected (H, W, 3) RGB")
        if array.dtype != np.uint8:
            # Float images are taken as 0..1 (PIL/diffusers "np" output) unless they exceed it.
            array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    if not isinstance(image, Image.Image):
        raise ValueError(f"image={type(image).__name__} must be a PIL image or an (H, W, 3) array")
    image = image.convert("RGB")
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float64)


def _nearest(color: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    distances = [np.linalg.norm(color - np.asarray(palette[name], dtype=np.float64)) for name in names]
    return names[int(np.argmin(distances))]


def _object_color(rgb: np.ndarray, background_rgb: np.ndarray) -> str:
    """The palette color c whose blend with the background, bg + a * (c - bg) with a in [0.3, 1],
    comes nearest to `rgb`. A model's object often comes out as a washed-out mix with its
    background (pink for red on white); the plain nearest color would then name the wrong one."""
    best, best_distance = None, math.inf
    for name, color in COLORS.items():
        direction = np.asarray(color, dtype=np.float64) - background_rgb
        norm2 = float(direction @ direction)
        if norm2 < 1e-6:
            continue  # the background's own color: never the object's
        a = float(np.clip((rgb - background_rgb) @ direction / norm2, 0.3, 1.0))
        distance = float(np.linalg.norm(rgb - background_rgb - a * direction))
        if distance < best_distance:
            best, best_distance = name, distance
    return best


def _solidity(mask: np.ndarray, area: float) -> float:
    ys, xs = np.nonzero(mask)
    # Hull of the pixel squares' corners, so a one-pixel-wide line still has an area.
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull_area = ConvexHull(corners).volume  # in 2-D, "volume" is the area
    except QhullError:
        return 1.0
    return float(min(1.0, area / hull_area))


def classify_shape(fill: float, solidity: float, skew: float) -> str:
    """Shape from (fill of bounding box, solidity, vertical skewness).

    Thresholds sit midway between the values measured on clean and on blurred+noisy renders:
    skew: triangle <= -0.36, others >= -0.11; fill + solidity / 2: star <= 1.13, circle >= 1.19;
    fill: circle <= 0.81, square >= 0.84.
    """
    if skew < -0.25:
        return "triangle"
    if fill + solidity / 2 < 1.16:
        return "star"
    if fill > 0.825:
        return "square"
    return "circle"


def measure(image: ImageLike) -> Measurement:
    """Read background, object color, shape, position and size from an image (see the module doc)."""
    pixels = _as_array(image)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    background_rgb = np.median(border, axis=0)
    background = _nearest(background_rgb, BACKGROUNDS)

    distance = np.linalg.norm(pixels - background_rgb, axis=-1)
    # A 3x3 median keeps single noisy pixels from setting the object's contrast.
    smooth = ndimage.median_filter(distance, size=3)
    contrast = float(np.sort(smooth.ravel())[-8:].mean())
    none = Measurement(background, None, None, None, None, contrast, (math.nan, math.nan), 0.0, 0.0, 0.0, 0.0)
    if contrast < MIN_CONTRAST:
        return none

    mask = smooth > contrast / 2
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return none
    sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
    mask = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))

    # Soft coverage: an antialiased edge pixel counts for the share of it the object covers.
    coverage = np.clip(distance / contrast, 0.0, 1.0) * ndimage.binary_dilation(mask)
    area = float(coverage.sum())
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
    centroid = (float((coverage * xs).sum() / area), float((coverage * ys).sum() / area))
    # Soft box: a row or column the object only grazes counts for the share it covers.
    width = float(coverage.max(axis=0).sum())
    height = float(coverage.max(axis=1).sum())
    extent = math.sqrt(width * height)
    fill = area / (width * height)
    # Vertical skewness: an upright triangle's mass sits low (about -0.57), a star's a little high.
    var_y = (coverage * (ys - centroid[1]) ** 2).sum() / area
    skew = float((coverage * (ys - centroid[1]) ** 3).sum() / area / max(var_y, 1e-9) ** 1.5)
    solidity = _solidity(mask, float(mask.sum()))

    inner = mask & (smooth > 0.75 * contrast)
    color = _object_color(np.median(pixels[inner if inner.any() else mask], axis=0), background_rgb)
    position = min(ANCHORS, key=lambda p: math.dist(ANCHORS[p], centroid))
    size = "big" if extent > SIZE_THRESHOLD else "small"
    return Measurement(
        background, color, classify_shape(fill, solidity, skew), position, size, contrast, centroid, extent, fill, solidity, skew
    )


# A pixel this far (RGB distance) from every mix of the object's and the background's palette
# colors is "off the palette": half the distance between the two nearest palette colors (orange and
# yellow, 80.6 apart), so such a pixel is nearer another color than its own. A clean render has
# none: its antialiased edge pixels are such mixes.
OFF_PALETTE_DISTANCE = 40.0


def off_palette(image: ImageLike) -> float:
    """Share of pixels far from every mix of the picture's own object and background palette colors.

    The sign of too much guidance: colors pushed past the palette (over-saturated, shifted) and
    specks or rims of other colors. Both colors are the ones `measure` reads, so a picture of the
    wrong object is not counted here (adherence counts that); a picture with no object is judged
    against its background alone. A pixel's distance is to the segment from the background's
    color to the object's, so soft edges do not count."""
    pixels = _as_array(image).reshape(-1, 3)
    seen = measure(image)
    background = np.asarray(BACKGROUNDS[seen.background], dtype=np.float64)
    color = COLORS.get(seen.color) if seen.color is not None else None
    if color is None or seen.color == seen.background:
        distance = np.linalg.norm(pixels - background, axis=1)
    else:
        direction = np.asarray(color, dtype=np.float64) - background
        a = np.clip((pixels - background) @ direction / float(direction @ direction), 0.0, 1.0)
        distance = np.linalg.norm(pixels - background - a[:, None] * direction, axis=1)
    return float((distance > OFF_PALETTE_DISTANCE).mean())


def score(image: ImageLike, caption: Union[str, Caption]) -> dict[str, bool]:
    """Per-attribute agreement of `image` with `caption`, over the attributes the caption names."""
    caption = as_caption(caption)
    seen = measure(image)
    return {field: getattr(seen, field) == value for field, value in caption.named.items()}


def adherence(images: Sequence[ImageLike], prompts: Union[str, Caption, Sequence[Union[str, Caption]]]) -> dict[str, float]:
    """Share of images that show each attribute their prompt names, plus "joint" (all named ones right).

    `prompts` is one prompt for all images or one per image. An attribute appears in the result
    only if at least one prompt names it; its fraction is over those prompts only.
    """
    if isinstance(images, (Image.Image, np.ndarray)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    images = list(images)
    if isinstance(prompts, (str, Caption)):
        prompts = [prompts] * len(images)
    prompts = list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"prompts has {len(prompts)} entries for {len(images)} images; give one prompt or one per image")
    if not images:
        raise ValueError("images is empty; give at least one image")

    hits: dict[str, list[bool]] = {field: [] for field in ATTRIBUTES}
    joint = []
    for image, prompt in zip(images, prompts):
        result = score(image, prompt)
        for field, ok in result.items():
            hits[field].append(ok)
        joint.append(all(result.values()))
    out = {field: sum(oks) / len(oks) for field, oks in hits.items() if oks}
    out["joint"] = sum(joint) / len(joint)
    return out
