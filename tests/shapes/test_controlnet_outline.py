"""The embedded model's drawable ControlNet: hand-drawn outlines, the training script (--tiny), and the
shipped ControlNet (nbd.load_pipeline(controlnet="outline"))."""
import numpy as np
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.shapes import measure
from nbdiffuse.shapes.outline import outline, training_pair


def stroke_centre(picture):
    pixels = np.asarray(picture)[..., 0] > 128
    ys, xs = np.nonzero(pixels)
    return (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2


def test_an_outline_is_drawn_around_the_rendered_object():
    for seed in range(20):
        caption, picture, drawn = training_pair(seed=seed)
        seen = measure(picture)
        cx, cy = stroke_centre(drawn)
        assert seen.shape == caption.shape
        # a hand misplaces the figure a little, never by more than a few pixels
        assert abs(cx - seen.centroid[0]) < 4.5 and abs(cy - seen.centroid[1]) < 4.5, (seed, caption)
        values = np.asarray(drawn)
        assert values.shape == (64, 64, 3) and values[..., 0].max() > 200 and np.median(values) == 0


def test_outlines_differ_by_seed_and_repeat_with_it():
    a, b = outline("star", "on the left", seed=1), outline("star", "on the left", seed=2)
    assert np.array_equal(np.asarray(a), np.asarray(outline("star", "on the left", seed=1)))
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    assert stroke_centre(a)[0] < 24  # on the left


def test_training_script_tiny_run_writes_a_controlnet_the_loader_takes(tmp_path):
    from nbdiffuse.shapes import train_controlnet

    out = train_controlnet.main(["--out", str(tmp_path / "cn"), "--tiny"])
    assert (out / "config.json").is_file() and (out / "TRAINING.md").is_file()
    pipe = nbd.load_pipeline(controlnet=str(out))
    assert type(pipe).__name__ == "StableDiffusionControlNetPipeline"
    traj = nbd.trace(pipe, "red, white background", steps=2, guidance=5.0, control_image=outline())
    assert traj[0].control_strength > 0
    again = train_controlnet.main(["--out", str(tmp_path / "cn"), "--tiny", "--threads", "1"])  # a resume: a run of its own
    runs = [line for line in (again / "TRAINING.md").read_text().splitlines() if line.startswith("- steps ")]
    assert len(runs) == 2 and runs[0].startswith("- steps 0-2: `python -m nbdiffuse.shapes.train_controlnet --out DIR")
    assert runs[1].startswith("- steps 2-2:") and "on 1 CPU thread(s)" in runs[1]


def test_shipped_outline_controlnet_at_scale_zero_is_the_plain_model_bit_for_bit():
    plain = nbd.load_pipeline()
    pipe = nbd.load_pipeline(controlnet="outline")
    drawn = outline("triangle", "at the top", seed=5)
    a = nbd.trace(plain, "red, white background", steps=4, guidance=5.0, seed=7)
    b = nbd.trace(pipe, "red, white background", steps=4, guidance=5.0, seed=7, control_image=drawn, control_scale=0)
    c = nbd.trace(pipe, "red, white background", steps=4, guidance=5.0, seed=7, control_image=drawn)
    assert torch.equal(a.final_latents, b.final_latents)
    assert not torch.equal(a.final_latents, c.final_latents)
    assert c.params["control"]["model"] == "outline"
    with pytest.raises(ValueError, match="controlnet='outline' is the embedded shapes model's"):
        from nbdiffuse.testing import tiny_sd_pipeline

        nbd.load_pipeline(tiny_sd_pipeline(), controlnet="outline")


def test_loading_the_outline_pipeline_prints_no_empty_float32_notes():
    # diffusers' from_pipe casts each model with a dtype and warns "should be kept in float32: []" for an empty list
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("diffusers.models.modeling_utils")
    logger.addHandler(handler)
    try:
        nbd.load_pipeline(controlnet="outline")
    finally:
        logger.removeHandler(handler)
    assert not [message for message in seen if "should be kept in float32" in message]
