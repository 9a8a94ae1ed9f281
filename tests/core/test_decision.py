"""Decision curves: continuations from a spread of steps with fresh noise, and what they keep."""
import pytest

import nbdiffuse as nbd
from nbdiffuse.core.decision import DecisionCurve


def test_a_curve_on_a_model_without_a_judge_compares_pictures(sd_pipe):
    curve = nbd.decision_curve(sd_pipe, "a red circle", steps=6, guidance=3.0, seed=0, samples=2)
    assert isinstance(curve, DecisionCurve) and curve.steps == [0, 1, 2, 3, 4] and curve.samples == 2
    assert list(curve.keep) == ["picture"] and len(curve.keep["picture"]) == 5
    assert all(0.0 <= v <= 1.0 for v in curve.keep["picture"])
    assert len(curve.trajectory) == 6 and curve.trajectory.params["seed"] == 0
    assert curve.decided("picture", level=0.0) == 0


def test_the_embedded_model_is_judged_by_its_worlds_attributes():
    pipe = nbd.load_pipeline()
    curve = nbd.decision_curve(pipe, "big green star at the top, black background", steps=10, seed=1, samples=2,
                               at=[8, 2])
    assert curve.steps == [2, 8] and set(curve.keep) == {"color", "shape", "position", "size", "background"}
    assert curve.original == {"color": "green", "shape": "star", "position": "at the top", "size": "big",
                              "background": "black"}
    assert all(curve.keep[attribute][-1] == 1.0 for attribute in curve.keep)  # one step from the end: all kept
    assert curve.decided("color") in (2, 8)


@pytest.mark.parametrize("args, kind, words", [
    (dict(samples=0), ValueError, "samples must be an int between 1 and 64"),
    (dict(at=[7]), ValueError, "at must be an int between 0 and 4"),
    (dict(at="3"), TypeError, "at must be a sequence of step indices"),
    (dict(at=[]), ValueError, "at must name at least one step"),
    (dict(steps=1), ValueError, "steps must be at least 2"),
])
def test_bad_arguments_are_refused_by_name(sd_pipe, args, kind, words):
    run = dict(steps=6, samples=1) | args
    with pytest.raises(kind, match=words):
        nbd.decision_curve(sd_pipe, "a red circle", **run)


def test_asking_for_an_attribute_the_curve_lacks_is_refused(sd_pipe):
    curve = nbd.decision_curve(sd_pipe, "a red circle", steps=3, samples=1)
    with pytest.raises(ValueError, match="attribute must be one of picture"):
        curve.decided("color")
