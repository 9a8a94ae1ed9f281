"""The shapes world of nbdiffuse's embedded default model.

64x64 images of one object on a plain background, captioned from a small grammar
("big red circle on the left, white background"). This package holds the grammar, the renderer,
a geometric evaluator (no network) and the training script of the model that ships with nbdiffuse:

    import nbdiffuse as nbd
    nbd.shapes.VOCABULARY
    nbd.shapes.parse_caption("a star at the top").unknown_words
    nbd.shapes.render("red circle", seed=0)                  # PIL 64x64
    nbd.shapes.adherence(images, prompts)                    # {"color": 0.9, ..., "joint": 0.7}
    nbd.shapes.off_palette(image)                            # share of pixels off the palette (too much guidance)
    nbd.shapes.outline("star", "on the left")                # a hand-drawn outline (the ControlNet's input)

Training: `python -m nbdiffuse.shapes.train --out DIR [--preset gpu|cpu]` (see train.py); its drawable
ControlNet: `python -m nbdiffuse.shapes.train_controlnet --out DIR` (see train_controlnet.py).
Importing this package needs numpy and Pillow only; the evaluator (scipy) loads on first use of
its names, torch/diffusers load in train/model.
"""

from .grammar import ATTRIBUTES, VOCABULARY, Caption, caption_text, parse_caption, random_caption
from .outline import outline
from .render import render, render_pool, render_sample

# The evaluator's names, imported on first use (PEP 562): it needs scipy, which costs ~0.6 s and
# every `import nbdiffuse` would pay it. The grammar and renderer stay eager: they are cheap, and
# `render` is both a submodule and a function here, which a lazy name could not keep apart.
_LAZY = {"Measurement": "evaluate", "adherence": "evaluate", "measure": "evaluate", "score": "evaluate",
         "off_palette": "evaluate"}

__all__ = [
    "ATTRIBUTES",
    "VOCABULARY",
    "Caption",
    "Measurement",
    "adherence",
    "caption_text",
    "measure",
    "off_palette",
    "outline",
    "parse_caption",
    "random_caption",
    "render",
    "render_pool",
    "render_sample",
    "score",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once: later look-ups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
