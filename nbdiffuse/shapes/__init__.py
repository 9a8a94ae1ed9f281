"""The shapes world of nbdiffuse's embedded default model.

64x64 images of one object on a plain background, captioned from a small grammar
("big red circle on the left, white background"). This package holds the grammar, the renderer,
a geometric evaluator (no network) and the training script of the model that ships with nbdiffuse:

    import nbdiffuse as nbd
    nbd.shapes.VOCABULARY
    nbd.shapes.parse_caption("a star at the top").unknown_words
    nbd.shapes.render("red circle", seed=0)                  # PIL 64x64
    nbd.shapes.adherence(images, prompts)                    # {"color": 0.9, ..., "joint": 0.7}

Training: `python -m nbdiffuse.shapes.train --out DIR [--preset gpu|cpu]` (see train.py).
Importing this package needs numpy, Pillow and scipy only; torch/diffusers load in train/model.
"""

from .evaluate import Measurement, adherence, measure, score
from .grammar import ATTRIBUTES, VOCABULARY, Caption, caption_text, parse_caption, random_caption
from .render import render, render_pool, render_sample

__all__ = [
    "ATTRIBUTES",
    "VOCABULARY",
    "Caption",
    "Measurement",
    "adherence",
    "caption_text",
    "measure",
    "parse_caption",
    "random_caption",
    "render",
    "render_pool",
    "render_sample",
    "score",
]
