"""Every bad argument is refused before any model work, naming the parameter; the next call works."""
import math

import pytest

import nbdiffuse as nbd

BAD = [
    ({"steps": 0}, ValueError, "steps must be an int between 1 and 1000, got 0"),
    ({"steps": 1001}, ValueError, "steps must be"),
    ({"steps": 2.5}, TypeError, "steps must be an int"),
    ({"steps": True}, TypeError, "steps must be an int"),
    ({"steps": "10"}, TypeError, "steps must be an int"),
    ({"guidance": math.nan}, ValueError, "guidance must be a finite number"),
    ({"guidance": math.inf}, ValueError, "guidance must be a finite number"),
    ({"guidance": -1.0}, ValueError, "guidance must be >= 0"),
    ({"guidance": "7"}, TypeError, "guidance must be a number"),
    ({"guidance": [5.0, 5.0]}, ValueError, "one value per step \\(4\\), got 2"),
    ({"guidance": [5.0, 5.0, math.nan, 5.0]}, ValueError, "guidance\\[2\\] must be a finite"),
    ({"guidance": lambda k: -k}, ValueError, "guidance\\(1\\) must be >= 0"),
    ({"guidance": lambda k: 1 / 0}, ValueError, "guidance\\(0\\) raised ZeroDivisionError"),
    ({"height": 15}, ValueError, "height must be a positive multiple of 2"),
    ({"width": 0}, ValueError, "width must be a positive multiple"),
    ({"width": -16}, ValueError, "width must be a positive multiple"),
    ({"height": 100000}, ValueError, "height must be at most 4096"),
    ({"height": 16.0}, TypeError, "height must be a positive int"),
    ({"scheduler": "eulerr"}, ValueError, "scheduler must be None or one of euler, euler_a"),
    ({"scheduler": 3}, ValueError, "scheduler must be None or one of"),
    ({"prompt": None}, TypeError, "prompt must be a string"),
    ({"prompt": ["a", "b"]}, TypeError, "prompt must be a string"),
    ({"negative_prompt": 5}, TypeError, "negative_prompt must be a string or None"),
    ({"seed": -1}, ValueError, "seed must be an int between 0 and 9223372036854775807"),
    ({"seed": 2**63}, ValueError, "seed must be an int between"),
    ({"seed": 1.5}, TypeError, "seed must be an int"),
    ({"seed": None}, TypeError, "seed must be an int"),
    ({"control": "stop"}, TypeError, "control must be an nbd.RunControl"),
    ({"on_step": 3}, TypeError, "on_step must be a callable"),
]


@pytest.mark.parametrize("change, error, match", BAD, ids=[str(c) for c, _, _ in BAD])
def test_bad_trace_arguments(sd_pipe, unet_calls, change, error, match):
    calls = unet_calls(sd_pipe)
    kwargs = {"prompt": "red circle", "steps": 4, **change}
    with pytest.raises(error, match=match):
        nbd.trace(sd_pipe, **kwargs)
    assert calls.count == 0


def test_next_call_after_bad_input_works(sd_pipe):
    with pytest.raises(ValueError):
        nbd.trace(sd_pipe, "red circle", steps=0)
    assert len(nbd.trace(sd_pipe, "red circle", steps=2)) == 2


def test_numpy_numbers_are_fine(sd_pipe):
    import numpy as np

    traj = nbd.trace(sd_pipe, "red circle", steps=np.int64(2), guidance=np.float32(3.0), seed=np.uint8(4))
    assert len(traj) == 2 and traj.params["seed"] == 4
