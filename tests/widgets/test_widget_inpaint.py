"""Inpainting in the Explorer (widgets/explorer/mask_panel.py): a mask beside the start picture, from Python or
uploaded, checked at once, and sent with every Generate that uses the picture."""
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import nbdiffuse as nbd
from nbdiffuse.core.inpaint import share as share_of
from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.sketch import SketchPad

WAIT = 120
SIDE = 64


def picture():
    image = Image.new("RGB", (SIDE, SIDE), "white")
    ImageDraw.Draw(image).ellipse((8, 16, 36, 44), fill=(220, 30, 30))
    return image


def mask(lo=32, hi=64):
    image = Image.new("L", (SIDE, SIDE), 0)
    image.paste(255, (lo, 0, hi, SIDE))  # the right half repainted
    return image


@pytest.fixture(scope="module")
def inpaint_pipe():
    return nbd.load_pipeline(inpaint=True)  # the embedded model's inpainting pipeline


@pytest.fixture
def explorer(inpaint_pipe, open_explorer):
    return open_explorer(inpaint_pipe, steps=6)


def test_a_mask_goes_with_the_start_picture(explorer, inpaint_pipe):
    ex, frontend = explorer
    assert ex.inpaints and ex.mask_share == 0.0
    ex.start_from(picture(), strength=1.0, mask=mask())
    assert ex.mask_share == 0.5 and ex.use_picture
    thumb = np.asarray(Image.open(io.BytesIO(ex.start_thumb)).convert("RGB"), np.int32)
    assert (thumb[:, -8:, 0] - thumb[:, -8:, 1]).mean() > 60 > (thumb[:, :8, 0] - thumb[:, :8, 1]).mean()  # tinted
    frontend.click("generate")
    assert ex.wait(WAIT) and ex.status == "done", ex.error
    traj = ex.trajectory
    assert traj.params["mask"]["share"] == 0.5 and traj.has_x0 and len(traj) == 6
    # the overlay row's mask: 255 where the model repaints (the right half), the same at every step
    assert ex.mask_grid == [SIDE, SIDE]
    shown = np.frombuffer(ex.mask_map, np.uint8).reshape(SIDE, SIDE)
    assert (shown[:, 32:] == 255).all() and not shown[:, :32].any()
    same = nbd.trace(inpaint_pipe, ex.prompt, steps=6, guidance=ex.guidance, seed=ex.seed, image=picture(),
                     strength=1.0, mask_image=mask(), scheduler=None, height=SIDE, width=SIDE)
    assert torch.equal(same.final_latents, traj.final_latents)  # the run trace makes


def test_a_mask_uploaded_from_the_browser(explorer):
    ex, frontend = explorer
    ex.start_from(picture())
    frontend.click("generate")  # no mask yet: said in the widget's words, the kernel fine
    ex.wait(WAIT)
    assert "mask: StableDiffusionInpaintPipeline repaints where a mask is white; upload one with" in ex.error
    data = io.BytesIO()
    mask().save(data, "PNG")
    frontend.send({"type": "upload_mask", "name": "mask.png"}, [data.getvalue()])
    assert ex.mask_share == 0.5 and ex.error == ""
    frontend.click("generate")
    assert ex.wait(WAIT) and ex.status == "done" and ex.trajectory.params["mask"]["share"] == 0.5
    small = io.BytesIO()
    Image.new("L", (16, 16), 255).save(small, "PNG")
    frontend.send({"type": "upload_mask", "name": "small.png"}, [small.getvalue()])
    assert ex.mask_share == 1.0 and ex.error == ""  # its shape at another scale: resized to the picture
    frontend.send({"type": "upload_mask", "name": "mask.png"}, [data.getvalue()])
    wide = io.BytesIO()
    Image.new("L", (32, 16), 255).save(wide, "PNG")
    frontend.send({"type": "upload_mask", "name": "wide.png"}, [wide.getvalue()])
    assert "mask_image is 32x16 and the start picture 64x64" in ex.error
    assert ex.mask_share == 0.5  # the mask before stays
    frontend.click("clear_picture")
    assert ex.mask_share == 0.0 and not ex.use_picture


def test_masks_refused_by_name(explorer, sd_pipe, open_explorer):
    ex, _ = explorer
    with pytest.raises(ValueError, match="mask: set the start picture first"):
        ex.mask_from(mask())
    with pytest.raises(ValueError, match="mask_image is black everywhere"):
        ex.start_from(picture(), mask=Image.new("L", (SIDE, SIDE), 0))
    assert not ex.use_picture  # a wrong mask changes nothing
    with pytest.raises(ValueError, match="mask_image needs a start picture"):
        ex.generate(mask_image=mask())
    plain, _ = open_explorer(sd_pipe, steps=4)
    assert not plain.inpaints
    with pytest.raises(ValueError, match=r"mask_image: StableDiffusionPipeline does not inpaint .*inpaint=True"):
        plain.start_from(picture(), mask=mask())


def test_a_sketch_pad_with_a_mask(explorer):
    ex, _ = explorer
    pad = SketchPad(width=SIDE, height=SIDE)
    ex.start_from(pad, strength=1.0, mask=mask())
    ex.generate(background=False)
    assert ex.status == "done" and ex.trajectory.params["mask"]["share"] == 0.5


def test_a_mask_painted_on_the_pad_is_read_at_each_generate(explorer):
    ex, _ = explorer
    ex.start_from(picture(), strength=1.0)
    pad = ex.mask_pad()
    assert isinstance(pad, nbd.MaskPad) and pad.image.size == (SIDE, SIDE) and ex.mask_share == 0.0
    with pytest.raises(ValueError, match="mask_image is black everywhere"):  # nothing painted yet
        ex.generate(background=False)
    side = pad.size[0]
    pad.stroke([(side * 0.75, 0), (side * 0.75, side)], "white", size=side // 2)  # the right half, roughly
    ex.generate(background=False)
    share = ex.trajectory.params["mask"]["share"]
    assert ex.status == "done" and 0.4 < share < 0.6 and ex.mask_share == share
    thumb = np.asarray(Image.open(io.BytesIO(ex.start_thumb)).convert("RGB"), np.int32)
    assert (thumb[:, -8:, 0] - thumb[:, -8:, 1]).mean() > (thumb[:, :8, 0] - thumb[:, :8, 1]).mean() + 30  # tinted
    pad.fill("white")  # everything repainted
    ex.generate(background=False)
    assert ex.trajectory.params["mask"]["share"] == 1.0
    pad.undo()
    assert 0.4 < share_of(pad.image) < 0.6
    again = ex.mask_pad()  # a new pad starts from the mask so far
    assert np.array_equal(np.asarray(again.image), np.asarray(pad.image))


def test_a_mask_pad_needs_a_start_picture_and_an_inpainting_pipeline(explorer, sd_pipe, open_explorer):
    ex, _ = explorer
    with pytest.raises(ValueError, match="mask: set the start picture first"):
        ex.mask_pad()
    plain, _ = open_explorer(sd_pipe, steps=4)
    plain.start_from(picture())
    with pytest.raises(ValueError, match=r"StableDiffusionPipeline does not inpaint .*inpaint=True"):
        plain.mask_pad()


def test_mask_pad_on_its_own():
    pad = nbd.MaskPad(picture(), mask=np.asarray(mask()) > 0)
    assert pad.size == (256, 256) and pad.image.size == (SIDE, SIDE)
    assert np.array_equal(np.asarray(pad.image) >= 128, np.asarray(mask()) >= 128)
    pad.clear()
    assert not np.asarray(pad.image).any()


def test_a_saved_inpainting_run_shows_its_mask_in_workshop_mode(inpaint_pipe, tmp_path):
    traj = nbd.trace(inpaint_pipe, "big blue square on the right, white background", steps=3, seed=0, image=picture(),
                     mask_image=mask(), strength=1.0)
    traj.save(tmp_path / "run.nbd")
    ex = Explorer.from_files([tmp_path / "run.nbd"])  # no model: what the file carries
    try:
        shown = np.frombuffer(ex.mask_map, np.uint8).reshape(ex.mask_grid)
        assert (shown[:, 32:] == 255).all() and not shown[:, :32].any()
    finally:
        ex.close()
