import numpy as np
import pytest

from nbdiffuse.shapes.grammar import (
    ATTRIBUTES,
    VOCABULARY,
    Caption,
    all_captions,
    caption_text,
    parse_caption,
    random_caption,
)


def test_vocabulary_is_the_documented_one():
    assert VOCABULARY == {
        "colors": ("red", "orange", "yellow", "green", "blue", "purple", "white", "black"),
        "shapes": ("circle", "square", "triangle", "star"),
        "positions": ("on the left", "on the right", "at the top", "at the bottom", "in the center"),
        "sizes": ("small", "big"),
        "backgrounds": ("white", "black", "gray", "sky"),
    }


def test_canonical_form():
    caption = Caption(size="big", color="red", shape="circle", position="on the left", background="white")
    assert caption.text() == "big red circle on the left, white background"
    assert Caption(color="red", shape="circle").text() == "red circle"
    assert Caption(background="sky").text() == "sky background"
    assert Caption().text() == ""


def test_every_canonical_caption_parses_back():
    captions = all_captions()
    assert len(captions) == 2 * 4 * 5 * (8 * 4 - 2)  # the color rule removes white/white and black/black
    for caption in captions:
        assert parse_caption(caption.text()) == caption


def test_free_word_order_articles_and_omissions():
    assert parse_caption("a star at the top") == Caption(shape="star", position="at the top")
    assert parse_caption("White background, an ORANGE square on the right.") == Caption(
        color="orange", shape="square", position="on the right", background="white"
    )
    assert parse_caption("on the left a big circle") == Caption(size="big", shape="circle", position="on the left")
    assert parse_caption("left circle") == Caption(shape="circle", position="on the left")
    # "white" names the object unless "background" follows; gray and sky can only be backgrounds.
    assert parse_caption("white star, gray") == Caption(color="white", shape="star", background="gray")
    assert parse_caption("star sky background") == Caption(shape="star", background="sky")


def test_training_variations_parse_back():
    rng = np.random.default_rng(0)
    for i in range(300):
        caption = random_caption(i, omit=0.3)
        text = caption_text(caption, rng, variation=True)
        assert parse_caption(text) == caption, text


def test_unknown_words_are_reported_and_ignored():
    caption = parse_caption("a shiny red circle near the top, pink background")
    assert caption.unknown_words == ("shiny", "near", "pink")
    assert caption.named == {"color": "red", "shape": "circle", "position": "at the top"}
    # A second value for an attribute is reported too; the first one wins.
    assert parse_caption("red blue circle").unknown_words == ("blue",)
    assert parse_caption("red blue circle").color == "red"
    assert parse_caption("circle, red background") == Caption(shape="circle", unknown_words=("red",))


def test_bad_values_raise_naming_the_parameter():
    with pytest.raises(ValueError, match="color='pink'"):
        Caption(color="pink")
    with pytest.raises(ValueError, match="never share a color"):
        Caption(color="white", background="white")
    with pytest.raises(ValueError, match="never share a color"):
        parse_caption("a white circle, white background")
    with pytest.raises(ValueError, match="text="):
        parse_caption(3)
    with pytest.raises(ValueError, match="omit="):
        random_caption(0, omit=2.0)


def test_complete_is_seeded_keeps_named_and_respects_the_color_rule():
    partial = Caption(shape="star", background="black")
    assert partial.complete(7) == partial.complete(7)
    seen = {field: set() for field in ATTRIBUTES}
    for seed in range(400):
        full = partial.complete(seed)
        assert full.is_complete and full.shape == "star" and full.background == "black"
        assert full.color != "black"
        for field in ATTRIBUTES:
            seen[field].add(getattr(full, field))
    assert seen["color"] == set(VOCABULARY["colors"]) - {"black"}
    assert seen["position"] == set(VOCABULARY["positions"])
    for seed in range(400):
        full = Caption(color="white").complete(seed)
        assert full.background != "white"


def test_random_caption_omissions():
    assert random_caption(3).is_complete
    counts = [len(random_caption(seed, omit=0.5).named) for seed in range(400)]
    assert 2.0 < np.mean(counts) < 3.0
