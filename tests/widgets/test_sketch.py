"""SketchPad: draw a start picture with the mouse; image to image from it, the shapes model too."""
import numpy as np
import pytest

import nbdiffuse as nbd
from nbdiffuse.widgets.sketch import UNDO_DEPTH, SketchPad


def test_mouse_strokes_land_in_the_picture_and_undo_takes_them_back():
    pad = SketchPad(width=64, height=64)
    assert pad.image.getpixel((40, 40)) == (255, 255, 255)
    pad.color.value = "blue"
    pad.brush.value = 6
    pad._down(30, 40)  # what ipycanvas calls on a mouse drag
    pad._move(50, 40)
    pad._up(50, 40)
    assert pad.image.getpixel((40, 40)) == (0x1e, 0x88, 0xe5)
    assert pad.image.getpixel((40, 10)) == (255, 255, 255)
    pad._move(60, 60)  # moving with the button up draws nothing
    assert pad.image.getpixel((60, 60)) == (255, 255, 255)
    pad.undo()
    assert pad.image.getpixel((40, 40)) == (255, 255, 255)


def test_fill_load_clear_and_a_bounded_undo(tmp_path):
    pad = SketchPad(width=32, height=32, background="black")
    assert pad.image.getpixel((0, 0)) == (0, 0, 0)
    pad.fill("sky")
    assert pad.image.getpixel((5, 5)) == (0x9f, 0xd3, 0xf5)
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:, :, 0] = 200
    pad.load(picture)  # resized to the pad
    assert pad.image.size == (32, 32) and pad.image.getpixel((10, 10)) == (200, 0, 0)
    for i in range(UNDO_DEPTH + 5):
        pad.stroke([(i, i)], color="white", size=1)
    for _ in range(UNDO_DEPTH + 5):
        pad.undo()
    assert pad.image.getpixel((10, 10)) == (200, 0, 0)  # the oldest strokes fell out of the undo stack
    pad.clear()
    assert pad.image.getpixel((10, 10)) == (255, 255, 255)


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 8}, "width must be an int in 16..2048"),
    ({"height": 4096}, "height must be an int in 16..2048"),
    ({"width": 64.0}, "width must be an int"),
    ({"background": "plaid"}, "colour 'plaid' is not a colour name"),
    ({"colors": ()}, "colors must name at least one colour"),
    ({"image": "missing.png"}, "image: could not read"),
])
def test_bad_pad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SketchPad(**kwargs)


def test_a_drawing_starts_an_image_to_image_run(sd_pipe):
    pad = SketchPad(width=64, height=64)
    pad.stroke([(20, 32)], color="red", size=20)
    traj = nbd.trace(sd_pipe, "big red circle on the left", steps=6, image=pad.image, strength=0.5)
    assert len(traj) == 3 and traj.params["image"]["width"] == 64


def test_the_shapes_model_redraws_a_sketch_where_it_was_drawn():
    pipe = nbd.load_pipeline()
    pad = SketchPad(width=64, height=64)
    pad.stroke([(18, 32)], color="red", size=22)  # a red blob on the left of a white pad
    traj = nbd.trace(pipe, "big red circle on the left, white background", steps=20, image=pad.image,
                     strength=0.5, seed=0)
    result = np.asarray(traj.final_image).astype(int)
    left, right = result[24:40, 10:26].mean((0, 1)), result[24:40, 40:56].mean((0, 1))
    assert left[0] > 120 and left[1] < 90 and left[2] < 90  # red stays where it was drawn
    assert right.min() > 200  # the background stays white
