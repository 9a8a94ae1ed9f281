"""Noisy training captions (the guidance lesson's recipe) and the off-palette measure of too much guidance."""
import numpy as np
from PIL import ImageFilter

from nbdiffuse.shapes import off_palette
from nbdiffuse.shapes.grammar import ATTRIBUTES, parse_caption, random_caption
import pytest

from nbdiffuse.shapes.render import COLORS, mislabel, noise_rates, render_sample, training_text
from nbdiffuse.shapes.text_batches import make_batch, swappable
from nbdiffuse.shapes.tokenizer import build_tokenizer


def test_mislabel_names_each_attribute_wrong_at_its_rate_and_keeps_the_color_rule():
    rng = np.random.default_rng(0)
    wrong = {field: 0 for field in ATTRIBUTES}
    for i in range(4000):
        caption = random_caption(seed=i)
        noisy = mislabel(caption, rng, 0.2)
        assert noisy.color != noisy.background
        for field in ATTRIBUTES:
            wrong[field] += getattr(noisy, field) != getattr(caption, field)
    assert all(0.17 < n / 4000 < 0.23 for n in wrong.values()), wrong
    caption = random_caption(seed=1)
    assert mislabel(caption, rng, 0.0) == caption
    always = mislabel(caption, rng, 0.999999)
    assert all(getattr(always, f) != getattr(caption, f) for f in ATTRIBUTES)


def test_per_attribute_rates_name_only_those_attributes_wrong():
    rng = np.random.default_rng(1)
    wrong = {field: 0 for field in ATTRIBUTES}
    for i in range(4000):
        caption = random_caption(seed=i)
        noisy = mislabel(caption, rng, {"shape": 0.3, "size": 0.1})
        for field in ATTRIBUTES:
            wrong[field] += getattr(noisy, field) != getattr(caption, field)
    assert 0.27 < wrong["shape"] / 4000 < 0.33 and 0.08 < wrong["size"] / 4000 < 0.12, wrong
    assert wrong["color"] == wrong["position"] == wrong["background"] == 0
    # one rate for all and the same rate named per attribute draw the same texts
    caption = random_caption(seed=5)
    every = {field: 0.2 for field in ATTRIBUTES}
    assert [training_text(caption, np.random.default_rng(s), 0.25, 0.2) for s in range(30)] == \
        [training_text(caption, np.random.default_rng(s), 0.25, every) for s in range(30)]


@pytest.mark.parametrize("noise, words", [({"colour": 0.1}, "'colour'"), ({"shape": 1.0}, "shape=1.0"),
                                          (-0.1, "size=-0.1")])
def test_bad_noise_rates_are_named(noise, words):
    with pytest.raises(ValueError, match=words):
        noise_rates(noise)


def test_pair_share_draws_that_share_of_the_batch_from_black_and_white_pairs(tmp_path):
    tokenizer = build_tokenizer(tmp_path / "tok")
    captions = [random_caption(seed=i) for i in range(3000)]
    pairs = swappable(captions)
    assert all({captions[i].color, captions[i].background} == {"black", "white"} for i in pairs)
    assert 0.05 < len(pairs) / len(captions) < 0.12  # as drawn, about 1 in 12
    plain, _ = make_batch(captions, tokenizer, seed=1, step=4, batch=1000)
    zero, _ = make_batch(captions, tokenizer, seed=1, step=4, batch=1000, pair_share=0.0)
    assert np.array_equal(plain, zero)
    focused, _ = make_batch(captions, tokenizer, seed=1, step=4, batch=1000, pair_share=0.5)
    share = np.isin(focused, pairs).mean()
    assert 0.5 < share < 0.6, share  # half drawn from the pairs, plus the pairs among the other half


def test_noise_zero_gives_the_texts_of_a_run_without_it():
    """A run without --caption-noise (and a resumed older run) draws exactly the texts it drew before."""
    caption = random_caption(seed=3)
    plain = [training_text(caption, np.random.default_rng(7), 0.25) for _ in range(5)]
    zero = [training_text(caption, np.random.default_rng(7), 0.25, 0.0) for _ in range(5)]
    assert plain == zero
    noisy = {training_text(caption, np.random.default_rng(s), 0.0, 0.5) for s in range(40)}
    assert len(noisy) > 10 and all(parse_caption(t).named for t in noisy)


def test_noisy_batches_differ_from_clean_ones_only_in_the_texts(tmp_path):
    tokenizer = build_tokenizer(tmp_path / "tok")
    captions = [random_caption(seed=i) for i in range(64)]
    i0, clean = make_batch(captions, tokenizer, seed=1, step=4, batch=32)
    i1, noisy = make_batch(captions, tokenizer, seed=1, step=4, batch=32, noise=0.3)
    assert np.array_equal(i0, i1) and not np.array_equal(clean, noisy)


def test_off_palette_is_zero_on_clean_renders_and_counts_colors_past_the_palette():
    for i in range(20):
        _, image = render_sample(random_caption(seed=i), seed=i)
        assert off_palette(image) == 0.0
        assert off_palette(image.filter(ImageFilter.GaussianBlur(1.0))) < 0.01  # soft edges are mixes, not artefacts
    caption, image = render_sample(parse_caption("big red circle in the center, white background").complete(0), seed=0)
    array = np.asarray(image).copy()
    array[:8, 20:44] = COLORS["green"]  # a stripe of a colour that is neither the object's nor the background's
    assert abs(off_palette(array) - 8 * 24 / 64 ** 2) < 0.01
    saturated = np.asarray(image).astype(np.float64)
    red = np.all(np.abs(saturated - COLORS["red"]) < 30, axis=-1)
    saturated[red] = (130, 0, 0)  # the object pushed far past its palette colour
    assert off_palette(saturated.astype(np.uint8)) > 0.05
