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


def test_the_curve_of_a_run_continues_it_with_its_own_control(sd_controlnet_pipe):
    """The continuations of a ControlNet run keep its control picture and scales (they used to run without)."""
    import dataclasses

    import numpy as np
    import torch
    from PIL import Image

    from nbdiffuse.core.decision import _continue_from

    picture = Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    traj = nbd.trace(sd_controlnet_pipe, "a red circle", steps=4, guidance=5.0, seed=1, control_image=picture,
                     control_scale=[2.0, 2.0, 1.5, 1.5])
    plain = dataclasses.replace(traj, params={k: v for k, v in traj.params.items() if k != "control"})
    plain.control_image = None
    with_control, without = _continue_from(sd_controlnet_pipe, traj, 0, 7), _continue_from(sd_controlnet_pipe, plain, 0, 7)
    assert not np.array_equal(with_control, without)
    curve = nbd.decision_curve_of(sd_controlnet_pipe, traj, samples=1)
    assert curve.trajectory is traj and curve.steps == [0, 1, 2]
    assert torch.equal(curve.trajectory.final_latents, traj.final_latents)


def test_the_curve_of_a_run_started_from_a_picture_continues_from_its_place(sd_controlnet_pipe):
    import numpy as np
    from PIL import Image

    start = Image.fromarray((np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8))
    control = Image.fromarray((np.random.default_rng(3).random((16, 16, 3)) * 255).astype(np.uint8))
    curve = nbd.decision_curve(sd_controlnet_pipe, "a red circle", steps=8, guidance=5.0, seed=1, samples=1,
                               image=start, strength=0.5, control_image=control, control_scale=lambda k: 1.0 - 0.1 * k)
    assert curve.trajectory.params["start_step"] == 4 and curve.steps == [0, 1, 2]
    assert curve.keep["picture"][-1] > 0.9  # one step from the end of the run it continues: nearly the same picture


def test_a_curve_needs_x0_nbdiffuses_own_loop_and_a_finished_run(sd_pipe, xt_only_pipe):
    from nbdiffuse.testing import tiny_cogview3plus_pipeline

    control = nbd.RunControl()
    control.stop()
    stopped = nbd.trace(sd_pipe, "a red circle", steps=4, control=control)
    with pytest.raises(ValueError, match="needs a finished run; this one stopped after 0 of 4 steps"):
        nbd.decision_curve_of(sd_pipe, stopped)
    watched = nbd.trace(tiny_cogview3plus_pipeline(), "a red circle", steps=2, height=32, width=32)
    assert watched.has_x0  # read from its sampler, but its loop is the pipeline's: no continuations
    with pytest.raises(ValueError, match=r"runs its own loop.*a decision curve .* needs a family nbdiffuse knows"):
        nbd.decision_curve_of(sd_pipe, watched)
    alone = nbd.trace(xt_only_pipe, "a red circle", steps=2, height=16, width=160)
    with pytest.raises(ValueError, match="gives only the noisy latent x_t"):
        nbd.decision_curve_of(sd_pipe, alone)
