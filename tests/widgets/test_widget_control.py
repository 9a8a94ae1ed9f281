"""The Explorer's ControlNet controls on a tiny real ControlNet pipeline (no browser: a HeadlessFrontend):
the control picture (a sketch pad, an upload, an edge map), the scale and window, the strength per step,
the live scale, "no control from step k", and what is refused, named."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from nbdiffuse.widgets import SketchPad


def _outline(size=32):
    picture = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(picture).ellipse((6, 6, size - 7, size - 7), outline="white", width=2)
    return picture


def _png(picture):
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def control_explorer(sd_controlnet_pipe, open_explorer):
    return open_explorer(sd_controlnet_pipe, steps=6)


def test_capabilities_say_whether_the_model_has_a_controlnet(control_explorer, pipe, open_explorer):
    ex, fe = control_explorer
    assert fe.state["capabilities"]["control"] is True
    plain, plain_fe = open_explorer(pipe, steps=2)
    assert plain_fe.state["capabilities"]["control"] is False
    with pytest.raises(ValueError, match="no ControlNet"):
        plain.control_from(_outline())
    with pytest.raises(ValueError, match="no ControlNet"):
        plain.control_pad()
    with pytest.raises(ValueError, match="control_image needs a ControlNet pipeline"):
        plain.generate(control_image=_outline())


def test_a_run_with_a_control_picture_shows_its_strength_per_step(control_explorer):
    ex, fe = control_explorer
    ex.control_from(_outline())
    assert ex.use_control and ex.control_kinds == ["picture"] and ex.control_thumbs[0]
    fe.set(control_start=0.5)  # the window: the second half of the run
    fe.click("generate")
    assert ex.wait(120) and fe.state["status"] == "done", fe.state["error"]
    traj = ex.trajectory
    assert traj.params["control"]["start"] == 0.5 and traj.control_image is not None
    run = fe.state["control_run"]
    assert run["start"] == 0.5 and run["end"] == 1.0 and run["scales"] == [1.0] * 6
    strengths = run["strengths"]
    assert strengths == [s.control_strength for s in traj.steps]
    assert strengths[:3] == [0.0] * 3 and all(v > 0 for v in strengths[3:])  # acts only inside the window
    live = [m for m in fe.frames if "cs" in m]
    assert live and all(len(m["cs"]) == m["n"] for m in live)  # the live strip's figures
    ex.use_control = False
    ex.generate(background=False)  # no control picture: the plain model
    assert "control" not in ex.trajectory.params and fe.state["control_run"] == {}
    ex.load_run(1)  # a run without control, of a ControlNet pipeline: the Control row stays
    assert fe.state["capabilities"]["control"] is True and fe.state["control_run"] == {}
    ex.load_run(0)
    assert fe.state["control_run"]["strengths"] == strengths


def test_generate_takes_the_control_arguments_and_the_sliders_follow(control_explorer):
    ex, fe = control_explorer
    ex.generate(control_image=_outline(), control_scale=0.5, control_end=0.5, background=False)
    assert fe.state["control_scale"] == 0.5 and fe.state["control_end"] == 0.5
    strengths = fe.state["control_run"]["strengths"]
    assert all(v > 0 for v in strengths[:3]) and strengths[3:] == [0.0] * 3
    with pytest.raises(TypeError, match="control_scal"):
        ex.generate(control_scal=1.0)


def test_the_sketch_pad_is_read_at_each_generate(control_explorer):
    ex, fe = control_explorer
    pad = ex.control_pad()
    assert isinstance(pad, SketchPad) and ex.control_kinds == ["sketch"]
    assert np.asarray(pad.image).max() == 0  # black: draw white outlines on it
    ex.generate(background=False)
    empty = ex.trajectory
    before = ex.control_thumbs[0]
    for event, handlers in (("down", pad.canvas._mouse_down_callbacks), ("move", pad.canvas._mouse_move_callbacks),
                            ("up", pad.canvas._mouse_up_callbacks)):
        handlers(30.0 if event == "down" else 90.0, 60.0)  # a stroke with the mouse, as the canvas reports it
    assert ex.control_thumbs[0] != before  # the thumbnail shows the stroke at once, before any Generate
    pad.stroke([(40, 40), (200, 40), (200, 200), (40, 200), (40, 40)], color="white")
    ex.generate(background=False)
    drawn = ex.trajectory
    assert np.asarray(drawn.control_image).max() == 255 and np.asarray(empty.control_image).max() == 0
    assert not np.array_equal(np.asarray(drawn.image()), np.asarray(empty.image()))  # the drawing steers


def test_an_upload_and_an_edge_map_of_any_picture(control_explorer):
    ex, fe = control_explorer
    fe.send({"type": "control_upload"}, [_png(_outline())])
    assert fe.state["control_kinds"] == ["picture"] and fe.state["use_control"] and fe.state["error"] == ""
    photo = Image.new("RGB", (32, 32), (67, 160, 71))
    ImageDraw.Draw(photo).rectangle((8, 8, 23, 23), fill=(229, 57, 53))
    fe.send({"type": "control_upload", "edges": True}, [_png(photo)])
    assert fe.state["control_kinds"] == ["edges"] and fe.state["error"] == ""
    ex.generate(background=False)
    lines = np.asarray(ex.trajectory.control_image)
    assert lines[16, 16].max() == 0 and lines[8, 16].max() == 255  # the square's edge, not its inside
    fe.send({"type": "control_upload"}, [b"not a picture"])
    assert "control picture: could not read" in fe.state["error"], fe.state["error"]
    fe.send({"type": "control_clear"})
    assert not ex.use_control and fe.state["control_thumbs"] == [b""]


def test_bad_control_values_are_refused_and_named(control_explorer):
    ex, fe = control_explorer
    for name, value, error in [("control_scale", 11.0, ValueError), ("control_scale", -0.5, ValueError),
                               ("control_start", 1.5, ValueError), ("control_end", float("nan"), ValueError)]:
        with pytest.raises(error, match=name):
            setattr(ex, name, value)
    with pytest.raises(TypeError, match="edges"):
        ex.control_from(_outline(), edges="yes")
    ex.control_from(_outline())
    ex.control_start, ex.control_end = 0.6, 0.7
    ex.control_start = 0.8  # start above end: refused at Generate, with both named
    with pytest.raises(ValueError, match="control_start must be below control_end"):
        ex.generate()


def test_the_scale_slider_steers_a_running_run(control_explorer, wait_for):
    ex, fe = control_explorer
    ex.control_from(_outline())
    ex.generate(steps=200)
    wait_for(lambda: ex.trajectory is not None and len(ex.trajectory) >= 1, 60, "a first step")
    fe.set(control_scale=0.0)  # the user drags the slider during the run
    assert ex.wait(300)
    scales = [s.control_scale for s in ex.trajectory.steps]
    j = scales.index(0.0)
    assert j >= 1 and scales == [1.0] * j + [0.0] * (200 - j)  # from the next step on, to the end
    assert all(s.control_strength == 0.0 for s in ex.trajectory.steps[j:])


def test_no_control_from_step_k_is_a_branch(control_explorer):
    ex, fe = control_explorer
    ex.control_from(_outline())
    ex.generate(background=False)
    parent = ex.trajectory
    fe.send({"type": "no_control", "k": 2})
    assert ex.wait(120) and fe.state["error"] == "", fe.state["error"]
    child = ex.trajectory
    assert child is not parent and child.parent is parent and child.branched_at == 2
    assert [s.control_strength for s in child.steps[:3]] == [s.control_strength for s in parent.steps[:3]]
    assert [s.control_scale for s in child.steps[3:]] == [0.0] * 3
    assert fe.state["control_run"]["strengths"][3:] == [0.0] * 3 and fe.state["control_scale"] == 0.0
    ex.use_control = False
    ex.generate(background=False)
    with pytest.raises(ValueError, match="no control picture"):
        ex.without_control_from(1)


def test_a_run_keeps_the_model_size_whatever_the_pad_size(control_explorer, sd_controlnet_pipe):
    from nbdiffuse.core.families import adapter_for

    ex, fe = control_explorer
    ex.control_from(_outline(96))
    ex.generate(background=False)
    h, w = adapter_for(sd_controlnet_pipe).default_size()
    assert (ex.trajectory.params["height"], ex.trajectory.params["width"]) == (h, w) and (h, w) != (96, 96)


def test_the_outline_controlnet_refuses_a_picture_in_colour_and_takes_its_edges(open_explorer):
    from nbdiffuse.core.pipe_attrs import set_source
    from nbdiffuse.testing import tiny_controlnet_pipeline

    pipe = tiny_controlnet_pipeline(seed=2)
    set_source(pipe.controlnet, "outline")  # stands for the embedded model's outline ControlNet
    ex, fe = open_explorer(pipe, steps=2)
    photo = Image.new("RGB", (32, 32), (67, 160, 71))
    ImageDraw.Draw(photo).rectangle((8, 8, 23, 23), fill=(229, 57, 53))
    with pytest.raises(ValueError, match="source is not an outline.*edges=True"):
        ex.control_from(photo)
    with pytest.raises(ValueError, match="control_image is not an outline"):
        ex.generate(control_image=photo)
    fe.send({"type": "control_upload"}, [_png(photo)])
    assert "control picture is not an outline" in fe.state["error"]
    ex.control_from(photo, edges=True)  # its edge map is an outline
    ex.control_from(_outline())
    assert ex.control_kinds == ["picture"] and ex.use_control


def test_the_edges_of_a_large_picture_are_drawn_with_a_wide_pen(control_explorer):
    ex, fe = control_explorer
    big = Image.new("RGB", (1024, 1024), (67, 160, 71))
    ImageDraw.Draw(big).rectangle((256, 256, 767, 767), fill=(229, 57, 53))
    ex.control_from(big, edges=True)
    ex.generate(background=False)
    lines = np.asarray(ex.trajectory.control_image)[..., 0] > 127
    # the tiny model runs at 32 pixels: a 1-pixel edge would vanish there; the widest pen (15) is used
    assert lines.shape == (1024, 1024) and 14 <= lines[512, 230:282].sum() <= 20


def test_a_saved_control_run_shows_its_strengths_without_the_model(control_explorer, tmp_path):
    from nbdiffuse.widgets import Explorer

    ex, fe = control_explorer
    ex.generate(control_image=_outline(), control_end=0.5, background=False)
    path = ex.export("nbd", tmp_path / "run.nbd")
    ws = Explorer.from_files([path])
    try:
        assert ws.control_run["strengths"] == fe.state["control_run"]["strengths"]
        assert ws.capabilities["control"] is True and not ws.has_pipe  # the page hides the row: nothing to steer
    finally:
        ws.close()


def test_branch_here_takes_the_control_sliders_that_differ(control_explorer):
    ex, fe = control_explorer
    ex.control_from(_outline())
    ex.generate(background=False)
    fe.set(control_scale=0.25)
    fe.send({"type": "branch", "k": 2})
    assert ex.wait(120) and fe.state["error"] == "", fe.state["error"]
    child = ex.trajectory
    assert child.branched_at == 2 and [s.control_scale for s in child.steps] == [1.0] * 3 + [0.25] * 3
    fe.send({"type": "branch", "k": 3})  # nothing differs from the shown branch: its remaining steps replayed
    assert ex.wait(120) and [s.control_scale for s in ex.trajectory.steps] == [1.0] * 3 + [0.25] * 3


def test_the_control_settings_are_constructor_defaults(sd_controlnet_pipe, open_explorer, pipe):
    ex, fe = open_explorer(sd_controlnet_pipe, steps=6, control_image=_outline(), control_scale=0.5, control_end=0.5)
    assert fe.state["control_scale"] == 0.5 and fe.state["control_end"] == 0.5 and fe.state["control_start"] == 0.0
    assert ex.use_control and ex.control_kinds == ["picture"] and fe.state["control_thumbs"][0]
    ex.generate(background=False)
    control = ex.trajectory.params["control"]
    assert control["scale"] == [0.5] * 6 and control["end"] == 0.5
    strengths = fe.state["control_run"]["strengths"]
    assert all(v > 0 for v in strengths[:3]) and strengths[3:] == [0.0] * 3


def test_guess_mode_is_a_checkbox_generate_and_branch_here_follow(sd_controlnet_pipe, open_explorer):
    ex, fe = open_explorer(sd_controlnet_pipe, steps=4, control_image=_outline(), control_guess_mode=True)
    assert fe.state["control_guess_mode"] is True
    ex.generate(background=False)
    assert ex.trajectory.params["control"]["guess_mode"] is True and fe.state["control_run"]["guess_mode"] is True
    fe.set(control_guess_mode=False)  # the user unticks the box
    fe.send({"type": "branch", "k": 1})
    assert ex.wait(120) and fe.state["error"] == "", fe.state["error"]
    child = ex.trajectory
    assert child.branched_at == 1 and child.params["control"]["guess_mode"] is False
    ex.generate(control_guess_mode=True, background=False)  # from code: the box shows what ran
    assert ex.trajectory.params["control"]["guess_mode"] is True and fe.state["control_guess_mode"] is True
    with pytest.raises(TypeError, match="control_guess_mode must be True or False, got 'yes'"):
        ex.generate(control_guess_mode="yes")


def test_the_guess_mode_box_only_where_the_pipeline_has_one(sd_controlnet_pipe, open_explorer, pipe):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline_zoo"))
    import builders_control

    _, fe = open_explorer(sd_controlnet_pipe, steps=2)
    assert fe.state["control_guess"] is True
    ex, fe = open_explorer(builders_control.sd3_controlnet(), steps=2)
    assert fe.state["control_guess"] is False and fe.state["control_nets"] == 1
    ex.control_from(_outline(16))
    ex.generate(background=False)  # SD3's ControlNet in nbdiffuse's loop: its strength per step shows
    assert len(fe.state["control_run"]["strengths"]) == 2 and fe.state["control_run"]["unseen"] is False
    with pytest.raises(ValueError, match="SD3ControlNetModel has no guess mode"):
        ex.generate(control_guess_mode=True)
    ex.set_pipeline(sd_controlnet_pipe)
    assert fe.state["control_guess"] is True
    ex.set_pipeline(pipe)
    assert fe.state["control_guess"] is False and fe.state["control_nets"] == 0


def test_a_union_controlnet_has_a_kind_of_picture_per_slot(open_explorer, pipe):
    import traitlets

    from nbdiffuse.testing import tiny_flux_controlnet_pipeline

    union = tiny_flux_controlnet_pipeline(union=True)
    ex, fe = open_explorer(union, steps=3, height=32, width=32, control_image=_outline(32))
    assert fe.state["control_types"] == [3] and fe.state["control_modes"] == [None]
    fe.click("generate")  # no kind chosen yet: the error names control_mode, nothing runs
    assert "control_mode" in fe.state["error"] and "union ControlNet" in fe.state["error"], fe.state["error"]
    fe.set(control_modes=[2])  # the user picks "kind 2" in the slot's select
    ex.generate(background=False)
    assert ex.trajectory.params["control"]["mode"] == 2 and fe.state["error"] == ""
    fe.set(control_modes=[0])
    fe.send({"type": "branch", "k": 1})  # Branch here with another kind
    assert ex.wait(120) and fe.state["error"] == "", fe.state["error"]
    assert ex.trajectory.branched_at == 1 and ex.trajectory.params["control"]["mode"] == 0
    with pytest.raises(traitlets.TraitError, match=r"control_modes\[0\] must be a number from 0 to 2 or None, got 5"):
        ex.control_modes = [5]
    _, fe2 = open_explorer(union, steps=2, control_image=_outline(32), control_mode=1)
    assert fe2.state["control_modes"] == [1]
    with pytest.raises(ValueError, match=r"control_mode must be a number from 0 to 2 .*got 7"):
        open_explorer(union, steps=2, control_mode=7)
    ex.set_pipeline(pipe)  # a model without a union ControlNet: no kinds to choose
    assert fe.state["control_types"] == [] and fe.state["control_modes"] == []


@pytest.mark.parametrize("defaults, error, match", [
    (dict(control_guess_mode=1), TypeError, r"control_guess_mode must be True or False, got 1"),
    (dict(control_scale=-1.0), ValueError, r"control_scale must be .*got -1\.0"),
    (dict(control_start="half"), TypeError, r"control_start must be a number from 0 to 1.*'half'"),
    (dict(control_image="no/such/picture.png"), ValueError, r"control_image.*no/such/picture\.png"),
    (dict(control_imag=_outline()), TypeError, r"unknown default\(s\) control_imag; allowed: .*control_image"),
])
def test_a_bad_control_default_is_refused_by_name(sd_controlnet_pipe, defaults, error, match):
    import nbdiffuse as nbd

    with pytest.raises(error, match=match):
        nbd.Explorer(sd_controlnet_pipe, steps=2, **defaults)


def test_control_defaults_need_a_controlnet(pipe):
    import nbdiffuse as nbd

    with pytest.raises(ValueError, match=r"Explorer\(control_scale=\.\.\.\): this model has no ControlNet"):
        nbd.Explorer(pipe, control_scale=0.5)


def _square(size=32):
    picture = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(picture).rectangle((4, 4, size // 2, size // 2), outline="white", width=2)
    return picture


def test_several_controlnets_have_a_picture_slot_each(sd_multi_controlnet_pipe, sd_controlnet_pipe, open_explorer):
    import torch

    import nbdiffuse as nbd

    ex, fe = open_explorer(sd_multi_controlnet_pipe, steps=4)
    assert fe.state["control_nets"] == 2 and fe.state["control_thumbs"] == [b"", b""]
    ex.control_from(_outline(), net=1)
    assert fe.state["control_kinds"] == ["", "picture"] and ex.use_control
    fe.click("generate")  # the first ControlNet has no picture: said in the widget, by number
    assert "control picture 1 of 2 is missing" in fe.state["error"], fe.state["error"]
    with pytest.raises(ValueError, match=r"control picture 1 of 2 is missing.*net=0"):
        ex.generate()
    fe.send({"type": "control_upload", "net": 0}, [_png(_square())])
    assert fe.state["control_kinds"] == ["picture", "picture"] and fe.state["control_thumbs"][0]
    ex.generate(background=False)
    traj = ex.trajectory
    assert traj.params["control"]["nets"] == 2 and len(traj.control_image) == 2
    same = nbd.trace(sd_multi_controlnet_pipe, ex.prompt, steps=4, guidance=ex.guidance, seed=ex.seed,
                     height=traj.params["height"], width=traj.params["width"], control_image=traj.control_image)
    assert torch.equal(traj.final_latents, same.final_latents)
    assert fe.state["control_run"]["scales"] == [[1.0, 1.0]] * 4
    assert fe.state["control_units"] == [{"scale": 1.0, "start": 0.0, "end": 1.0}] * 2  # each ControlNet's sliders
    # per ControlNet from code: each one's sliders show what ran, and Branch here changes nothing until one moves
    ex.generate(control_image=[_square(), _outline()], control_scale=[1.0, 0.5], control_end=[1.0, 0.5],
                background=False)
    assert fe.state["control_units"] == [{"scale": 1.0, "start": 0.0, "end": 1.0}, {"scale": 0.5, "start": 0.0, "end": 0.5}]
    fe.send({"type": "branch", "k": 1})
    assert ex.wait(120) and fe.state["error"] == "", fe.state["error"]
    assert [s.control_scale for s in ex.trajectory.steps] == [[1.0, 0.5]] * 4
    assert ex.trajectory.params["control"]["end"] == [1.0, 0.5]
    fe.set(control_units=[{"scale": 0.25, "start": 0.0, "end": 1.0}, {"scale": 0.5, "start": 0.0, "end": 0.5}])
    fe.send({"type": "branch", "k": 1})  # the first ControlNet's slider moved: its scale from there
    assert ex.wait(120) and [s.control_scale for s in ex.trajectory.steps] == [[1.0, 0.5]] * 2 + [[0.25, 0.5]] * 2
    fe.click("generate")  # Generate takes each ControlNet's sliders
    assert ex.wait(120) and ex.trajectory.params["control"]["scale"] == [[0.25, 0.5]] * 4
    with pytest.raises(Exception, match=r"control_end\[1\] must be a number from 0 to 1"):
        ex.control_units = [{"scale": 1.0, "start": 0.0, "end": 1.0}, {"scale": 1.0, "start": 0.0, "end": 2.0}]
    fe.send({"type": "control_clear", "net": 0})  # one slot emptied: the other stays
    assert fe.state["control_kinds"] == ["", "picture"] and ex.use_control
    with pytest.raises(ValueError, match=r"net must be a ControlNet's index from 0 to 1 \(this pipeline runs 2\), got 2"):
        ex.control_from(_outline(), net=2)
    ex.set_pipeline(sd_controlnet_pipe)  # one ControlNet: one slot, the first's picture (empty), the one set of sliders
    assert fe.state["control_nets"] == 1 and fe.state["control_kinds"] == [""] and not ex.use_control
    assert fe.state["control_units"] == []


def test_each_controlnets_scale_steers_a_running_run(sd_multi_controlnet_pipe, open_explorer, wait_for):
    ex, fe = open_explorer(sd_multi_controlnet_pipe, steps=6, control_image=[_square(), _outline()])
    ex.generate(steps=200)
    wait_for(lambda: ex.trajectory is not None and len(ex.trajectory) >= 1, 60, "a first step")
    fe.set(control_units=[{"scale": 1.0, "start": 0.0, "end": 1.0}, {"scale": 0.0, "start": 0.0, "end": 1.0}])
    assert ex.wait(300) and fe.state["error"] == "", fe.state["error"]
    scales = [s.control_scale for s in ex.trajectory.steps]
    j = scales.index([1.0, 0.0])
    assert j >= 1 and scales == [[1.0, 1.0]] * j + [[1.0, 0.0]] * (200 - j)  # from the next step on, the second off


def test_several_controlnets_pictures_as_constructor_defaults(sd_multi_controlnet_pipe, open_explorer):
    import nbdiffuse as nbd

    ex, fe = open_explorer(sd_multi_controlnet_pipe, steps=3, control_image=[_square(), _outline()],
                           control_scale=[1.0, 0.3], control_end=0.8)
    assert fe.state["control_kinds"] == ["picture", "picture"] and ex.use_control
    assert fe.state["control_units"] == [{"scale": 1.0, "start": 0.0, "end": 0.8}, {"scale": 0.3, "start": 0.0, "end": 0.8}]
    with pytest.raises(ValueError, match=r"control_scale: this pipeline runs 2 ControlNets"):
        nbd.Explorer(sd_multi_controlnet_pipe, control_scale=[1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match=r"control_scale\[1\] must be a number from 0 to 10"):
        nbd.Explorer(sd_multi_controlnet_pipe, control_scale=[1.0, 11.0])
    pad = ex.control_pad(net=1)  # a sketch pad for the second
    assert fe.state["control_kinds"] == ["picture", "sketch"]
    pad.stroke([(40, 40), (200, 40), (200, 200)], color="white")
    ex.generate(background=False)
    assert np.asarray(ex.trajectory.control_image[1]).max() == 255 and fe.state["error"] == ""
