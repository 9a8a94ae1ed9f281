import numpy as np
import pytest
from PIL import Image, ImageFilter

from nbdiffuse.shapes.evaluate import adherence, measure, score
from nbdiffuse.shapes.grammar import ATTRIBUTES, Caption, random_caption
from nbdiffuse.shapes.render import BACKGROUNDS, render, render_pool, render_sample, to_tensor

N = 300  # random captions per accuracy check


def _accuracy(degrade=None):
    rng = np.random.default_rng(0)
    hits = {field: 0 for field in ATTRIBUTES}
    joint = 0
    for i in range(N):
        caption, image = render_sample(random_caption(i), seed=1000 + i)
        if degrade is not None:
            image = degrade(image, caption, rng)
        seen = measure(image)
        ok = {field: getattr(seen, field) == getattr(caption, field) for field in ATTRIBUTES}
        for field, good in ok.items():
            hits[field] += good
        joint += all(ok.values())
    return {field: hits[field] / N for field in ATTRIBUTES} | {"joint": joint / N}


def _blur_noise_washout(image, caption, rng, blur=1.0, noise=8.0, strength=0.7):
    """Model-like damage: Gaussian blur, pixel noise and a washed-out object color."""
    array = np.asarray(image.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float64)
    background = np.asarray(BACKGROUNDS[caption.background], dtype=np.float64)
    array = background + strength * (array - background) + rng.normal(0.0, noise, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def test_render_is_64x64_rgb_and_seeded():
    image = render("big red circle on the left, white background", seed=0)
    assert image.size == (64, 64) and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(render("big red circle on the left, white background", seed=0)))
    assert not np.array_equal(np.asarray(image), np.asarray(render("big red circle on the left, white background", seed=1)))
    assert tuple(np.asarray(image)[0, 0]) == BACKGROUNDS["white"]


def test_render_fills_omitted_attributes_from_the_seed():
    caption, _ = render_sample(Caption(shape="star"), seed=3)
    assert caption.is_complete and caption.shape == "star"
    backgrounds = {render_sample("a star", seed=s)[0].background for s in range(40)}
    assert len(backgrounds) == 4


def test_render_is_antialiased():
    pixels = np.asarray(render("big red circle in the center, white background", seed=0)).reshape(-1, 3)
    colors = {tuple(p) for p in pixels}
    assert len(colors) > 10  # edge pixels are blends, not just object + background


def test_renderer_and_evaluator_agree_on_clean_renders():
    accuracy = _accuracy()
    assert min(accuracy.values()) >= 0.99, accuracy


def test_evaluator_survives_blur_noise_and_washed_out_colors():
    accuracy = _accuracy(_blur_noise_washout)
    assert min(accuracy.values()) >= 0.90, accuracy


def test_score_and_adherence_count_only_named_attributes():
    image = render("big red circle on the left, white background", seed=0)
    assert score(image, "red circle") == {"color": True, "shape": True}
    assert score(image, "small blue circle") == {"size": False, "color": False, "shape": True}
    result = adherence([image, image], ["red circle", "blue star at the top"])
    assert result == {"color": 0.5, "shape": 0.5, "position": 0.0, "joint": 0.5}
    assert adherence([image], "red circle") == {"color": 1.0, "shape": 1.0, "joint": 1.0}
    with pytest.raises(ValueError, match="prompts has 2 entries for 1 images"):
        adherence([image], ["red circle", "a star"])


def test_evaluator_takes_arrays_and_other_sizes():
    image = render("small green triangle at the bottom, black background", seed=2)
    big = image.resize((256, 256), Image.Resampling.BICUBIC)
    assert all(score(big, "small green triangle at the bottom, black background").values())
    assert all(score(np.asarray(image) / 255.0, "small green triangle at the bottom, black background").values())
    empty = Image.new("RGB", (64, 64), BACKGROUNDS["gray"])
    assert measure(empty).shape is None and measure(empty).background == "gray"
    assert score(empty, "gray background") == {"background": True}


def test_pool_is_seeded_and_converts_to_vae_range():
    captions, images = render_pool(6, seed=5, workers=1)
    again_captions, again = render_pool(6, seed=5, workers=1)
    assert captions == again_captions and np.array_equal(images, again)
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8
    tensor = to_tensor(images)
    assert tensor.shape == (6, 3, 64, 64) and -1.0 <= tensor.min() and tensor.max() <= 1.0
