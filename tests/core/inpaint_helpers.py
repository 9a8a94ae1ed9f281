"""What the inpainting tests share: a seeded start picture and a square mask in its middle (white repaints)."""
import numpy as np
from PIL import Image

PROMPT = "a red circle"
SIZE = 32


def picture(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def square_mask(lo=8, hi=24):
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (lo, lo, hi, hi))
    return mask
