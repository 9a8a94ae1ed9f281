"""The caption grammar of the shapes world.

A caption names up to five attributes of one object on a plain background. Its canonical form is

    "{size} {color} {shape} {position}, {background} background"
    e.g. "big red circle on the left, white background"

Any attribute may be left out ("red circle", "a star at the top"); it then varies with the seed
(`Caption.complete`). Word order and the articles "a"/"an"/"the" are free. Words outside the
grammar are ignored and kept in `Caption.unknown_words` so a UI can show them. The one rule that
ties attributes together: the object never has the background's color.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Union

import numpy as np


# The whole vocabulary. Positions are phrases; the renderer and the evaluator key on these strings.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "colors": ("red", "orange", "yellow", "green", "blue", "purple", "white", "black"),
    "shapes": ("circle", "square", "triangle", "star"),
    "positions": ("on the left", "on the right", "at the top", "at the bottom", "in the center"),
    "sizes": ("small", "big"),
    "backgrounds": ("white", "black", "gray", "sky"),
}

# Caption field -> vocabulary key. The order is the canonical order of the attributes.
ATTRIBUTES: dict[str, str] = {
    "size": "sizes",
    "color": "colors",
    "shape": "shapes",
    "position": "positions",
    "background": "backgrounds",
}

# Words the grammar uses that carry no attribute: articles, the prepositions of the position
# phrases, and the word "background" itself.
FILLER_WORDS = ("a", "an", "the", "on", "at", "in", "background")

# The one word of each position phrase that decides it ("on the left" -> "left").
_POSITION_KEYWORDS = {phrase.split()[-1]: phrase for phrase in VOCABULARY["positions"]}

SeedLike = Union[int, np.random.Generator, None]


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class Caption:
    """One caption: each attribute is a vocabulary entry or None (left out, varies with the seed)."""

    size: Optional[str] = None
    color: Optional[str] = None
    shape: Optional[str] = None
    position: Optional[str] = None
    background: Optional[str] = None
    # Words of the text this caption was parsed from that the grammar does not know.
    unknown_words: tuple[str, ...] = ()

    def __post_init__(self):
        for field, key in ATTRIBUTES.items():
            value = getattr(self, field)
            if value is not None and value not in VOCABULARY[key]:
                raise ValueError(f"{field}={value!r} is not in the vocabulary; allowed: {', '.join(VOCABULARY[key])} or None")
        if self.color is not None and self.color == self.background:
            raise ValueError(
                f"color={self.color!r} equals background={self.background!r}; object and background never share a color"
            )

    @property
    def named(self) -> dict[str, str]:
        """The attributes this caption names (attribute -> value), in canonical order."""
        return {field: getattr(self, field) for field in ATTRIBUTES if getattr(self, field) is not None}

    @property
    def is_complete(self) -> bool:
        return len(self.named) == len(ATTRIBUTES)

    def text(self) -> str:
        """The canonical text, e.g. "big red circle on the left, white background"."""
        return caption_text(self)

    def __str__(self) -> str:
        return self.text()

    def complete(self, seed: SeedLike = None) -> "Caption":
        """This caption with every left-out attribute drawn from `seed`; named attributes are kept.

        The draw is uniform over what the color rule allows: the object color avoids a named
        background and the background avoids the (named or drawn) object color.
        """
        rng = _rng(seed)
        values = self.named
        for field in ("size", "shape", "position"):
            if field not in values:
                values[field] = _choice(rng, VOCABULARY[ATTRIBUTES[field]])
        if "color" not in values:
            values["color"] = _choice(rng, [c for c in VOCABULARY["colors"] if c != values.get("background")])
        if "background" not in values:
            values["background"] = _choice(rng, [b for b in VOCABULARY["backgrounds"] if b != values["color"]])
        return Caption(**values, unknown_words=self.unknown_words)

    def without(self, *fields: str) -> "Caption":
        """This caption with the given attributes left out."""
        for field in fields:
            if field not in ATTRIBUTES:
                raise ValueError(f"field={field!r} is not an attribute; allowed: {', '.join(ATTRIBUTES)}")
        return dataclasses.replace(self, **{field: None for field in fields})


def _choice(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def caption_text(caption: Caption, rng: SeedLike = None, variation: bool = False) -> str:
    """The text of `caption`.

    With `variation=False` it is the canonical form. With `variation=True` the text is one of the
    free forms the grammar accepts, drawn from `rng`: an optional article, the position phrase
    moved to the front or the end, the background clause first or last. Training on these forms
    teaches the text encoder that word order is free.
    """
    size, color, shape, position, background = (getattr(caption, f) for f in ATTRIBUTES)
    noun = " ".join(word for word in (size, color, shape) if word is not None)
    back = f"{background} background" if background is not None else ""
    if not variation:
        head = " ".join(part for part in (noun, position) if part)
        return ", ".join(part for part in (head, back) if part)

    rng = _rng(rng)
    if noun and rng.random() < 0.4:
        article = "an" if noun[0] in "aeiou" else "a"
        noun = f"{article} {noun}"
    if position is not None and rng.random() < 0.3:
        head = " ".join(part for part in (position, noun) if part)
    else:
        head = " ".join(part for part in (noun, position) if part)
    parts = [part for part in (head, back) if part]
    if rng.random() < 0.25:
        parts.reverse()
    separator = ", " if rng.random() < 0.7 else " "
    return separator.join(parts)


def parse_caption(text: str) -> Caption:
    """Parse free text into a Caption.

    Rules, in order of precedence:
      - a color word directly before "background" ("white background"), and the words "gray" and
        "sky" anywhere, name the background ("red background" is reported: no background is red);
      - a position is named by its phrase or its last word alone ("on the left" or "left");
      - other vocabulary words name the size, color or shape;
      - articles and the words of position phrases are accepted and carry nothing;
      - everything else, and a second value for an attribute already named, goes to
        `unknown_words` and is otherwise ignored.
    Raises ValueError if the text names the same color for the object and the background.
    """
    if not isinstance(text, str):
        raise ValueError(f"text={text!r} must be a str")
    words = re.findall(r"[a-z]+", text.lower())
    values: dict[str, str] = {}
    unknown: list[str] = []

    def put(field: str, value: str, word: str):
        if field in values and values[field] != value:
            unknown.append(word)  # a second, different value: keep the first and report the rest
        else:
            values[field] = value

    for i, word in enumerate(words):
        next_word = words[i + 1] if i + 1 < len(words) else None
        if word in VOCABULARY["backgrounds"] and (next_word == "background" or word not in VOCABULARY["colors"]):
            put("background", word, word)
        elif next_word == "background" and word in VOCABULARY["colors"]:
            unknown.append(word)  # "red background": a color no background has, not the object's
        elif word in VOCABULARY["colors"]:
            put("color", word, word)
        elif word in VOCABULARY["sizes"]:
            put("size", word, word)
        elif word in VOCABULARY["shapes"]:
            put("shape", word, word)
        elif word in _POSITION_KEYWORDS:
            put("position", _POSITION_KEYWORDS[word], word)
        elif word not in FILLER_WORDS:
            unknown.append(word)

    if "color" in values and values["color"] == values.get("background"):
        raise ValueError(
            f"text={text!r} names {values['color']!r} for both object and background; "
            "object and background never share a color"
        )
    return Caption(**values, unknown_words=tuple(unknown))


def as_caption(caption: Union[str, Caption]) -> Caption:
    """Accept a Caption or a text (parsed)."""
    if isinstance(caption, Caption):
        return caption
    if isinstance(caption, str):
        return parse_caption(caption)
    raise ValueError(f"caption={caption!r} must be a str or a Caption")


def random_caption(seed: SeedLike = None, omit: float = 0.0) -> Caption:
    """A complete random caption (color rule respected), each attribute then left out with probability `omit`."""
    if not 0.0 <= omit <= 1.0:
        raise ValueError(f"omit={omit!r} must be a probability in [0, 1]")
    rng = _rng(seed)
    caption = Caption().complete(rng)
    if omit > 0:
        dropped = [field for field in ATTRIBUTES if rng.random() < omit]
        caption = caption.without(*dropped)
    return caption


def all_captions() -> list[Caption]:
    """Every complete caption the grammar allows (the color rule removes the shared-color pairs)."""
    return [
        Caption(size=s, color=c, shape=sh, position=p, background=b)
        for s in VOCABULARY["sizes"]
        for c in VOCABULARY["colors"]
        for sh in VOCABULARY["shapes"]
        for p in VOCABULARY["positions"]
        for b in VOCABULARY["backgrounds"]
        if c != b
    ]


def longest_caption() -> str:
    """The longest canonical caption in words (what the tokenizer's max length must hold)."""
    return max((caption_text(c) for c in all_captions()), key=lambda t: (len(t.split()), len(t)))
