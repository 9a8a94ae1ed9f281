"""Image to image in the Explorer: a start picture from Python, an upload or a SketchPad."""
import io

import pytest
from PIL import Image, ImageDraw

from nbdiffuse.widgets.frames import LOSSLESS_TYPE, mime_type
from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.headless import HeadlessFrontend
from nbdiffuse.widgets.sketch import SketchPad

WAIT = 120


def picture(size=64):
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((8, 16, 36, 44), fill=(220, 30, 30))
    return image


@pytest.fixture
def explorer(sd_pipe):
    ex = Explorer(sd_pipe, steps=10)
    frontend = HeadlessFrontend(ex)
    yield ex, frontend
    ex.close()
    frontend.close()


def test_start_from_a_picture_runs_image_to_image(explorer):
    ex, frontend = explorer
    ex.start_from(picture(), strength=0.5)
    assert ex.use_picture and mime_type(ex.start_thumb) == LOSSLESS_TYPE and ex.strength == 0.5
    frontend.click("generate")
    assert ex.wait(WAIT) and ex.status == "done", ex.error
    traj = ex.trajectory
    assert traj.params["strength"] == 0.5 and traj.params["start_step"] == 5
    assert len(traj) == ex.total_steps == ex.n_steps == 5 and len(ex.frames_x0) == 5
    frontend.set(use_picture=False)  # the "use" box off: from noise again, the picture kept
    frontend.click("generate")
    assert ex.wait(WAIT) and ex.trajectory.params["image"] is None and len(ex.trajectory) == 10
    assert ex.start_thumb


def test_upload_from_the_browser_and_clear(explorer):
    ex, frontend = explorer
    data = io.BytesIO()
    picture(48).save(data, "JPEG")
    frontend.send({"type": "upload", "name": "start.jpg"}, [data.getvalue()])
    assert ex.use_picture and ex.error == ""
    frontend.set(strength=0.3)
    frontend.click("generate")
    assert ex.wait(WAIT) and ex.trajectory.params["strength"] == 0.3 and len(ex.trajectory) == 3
    frontend.send({"type": "upload", "name": "notes.txt"}, [b"not a picture"])
    assert "not a picture Pillow can read" in ex.error
    frontend.click("clear_picture")
    assert not ex.use_picture and ex.start_thumb == b""


def test_a_sketch_pad_is_read_at_each_generate(explorer):
    ex, frontend = explorer
    pad = ex.sketch_pad()
    assert isinstance(pad, SketchPad) and ex.use_picture
    pad.fill("blue")
    ex.generate(strength=0.4)
    assert ex.wait(WAIT)
    first = ex.trajectory.params["image"]["sha256"]
    pad.stroke([(30, 30)], color="red", size=30)
    ex.generate(strength=0.4)
    assert ex.wait(WAIT)
    assert ex.trajectory.params["image"]["sha256"] != first  # the drawing as it was at Generate


def test_bad_start_pictures_are_refused_clearly(explorer):
    ex, _ = explorer
    with pytest.raises(ValueError, match="strength must be a number in \\(0, 1\\]"):
        ex.start_from(picture(), strength=2)
    with pytest.raises(TypeError, match="source must be a PIL.Image"):  # start_from's parameter, by name
        ex.start_from(42)
    with pytest.raises(ValueError, match="needs a start picture"):
        ex.generate(strength=0.5)
    with pytest.raises(ValueError, match="runs no step"):
        ex.generate(image=picture(), strength=0.05, steps=10)
    assert not ex.running


def test_an_image_to_image_run_branches(explorer):
    ex, frontend = explorer
    ex.start_from(picture(), strength=0.6)
    ex.generate(seed=1)
    assert ex.wait(WAIT)
    parent = ex.trajectory
    ex.branch(at=2, guidance=9.0)
    assert ex.wait(WAIT) and ex.status == "done", ex.error
    child = ex.trajectory
    assert child.params["parent"] == parent.id and len(child) == len(parent) == ex.total_steps == 6
    assert child[2].latents.equal(parent[2].latents) and not child[5].latents.equal(parent[5].latents)


def test_a_branch_past_the_last_step_an_image_to_image_run_made_is_refused_at_once(explorer):
    """The run makes the last 5 of 10 steps: branching at its 5th recorded step leaves nothing to run.
    The Explorer refuses that up front (core.branch.prepare_branch) instead of failing in its worker."""
    ex, frontend = explorer
    ex.start_from(picture(), strength=0.5)
    frontend.click("generate")
    assert ex.wait(WAIT) and ex.status == "done", ex.error
    assert len(ex.trajectory) == 5 and ex.trajectory.params["steps"] == 10
    with pytest.raises(ValueError, match=r"at=4 is the last step"):
        ex.branch(at=4, guidance=3.0)
    assert len(ex.history) == 1 and ex.status == "done"
    ex.branch(at=3, guidance=3.0)  # one step left to run
    assert ex.wait(WAIT) and ex.status == "done", ex.error
    assert len(ex.history) == 2 and len(ex.trajectory) == 5 and ex.trajectory.params["branched_at"] == 3
