"""Every number a user passes has a range, and a value outside it is refused by name before any model work."""
import math

import numpy as np
import pytest

import nbdiffuse as nbd
from nbdiffuse.core.validate import MAX_GUIDANCE, guidance_schedule


@pytest.mark.parametrize("guidance, kind, words", [
    (1e20, ValueError, "guidance must be at most 100"),
    (MAX_GUIDANCE + 0.5, ValueError, "guidance must be at most 100"),
    (-math.inf, ValueError, "guidance must be a finite number"),
    ({0: 5.0, 1: 5.0, 2: 5.0}, TypeError, "guidance must be a number"),  # a dict's len and keys are no schedule
    ({5.0, 6.0, 7.0}, TypeError, "guidance must be a number"),
    (frozenset({5.0}), TypeError, "guidance must be a number"),
    ((w for w in (5.0, 5.0, 5.0)), TypeError, "guidance must be a number"),  # no length: steps unknown
    ([5.0, 1e9, 5.0], ValueError, r"guidance\[1\] must be at most 100"),
    (lambda k: 10.0 ** (k * 10), ValueError, r"guidance\(1\) must be at most 100"),
    ("7", TypeError, "guidance must be a number"),
])
def test_guidance_out_of_range_or_of_no_order_is_refused(guidance, kind, words):
    with pytest.raises(kind, match=words):
        guidance_schedule(guidance, 3)


def test_guidance_in_range_passes_in_every_form():
    assert guidance_schedule(np.float32(7.5), 2) == [7.5, 7.5]
    assert guidance_schedule((0, MAX_GUIDANCE), 2) == [0.0, MAX_GUIDANCE]
    assert guidance_schedule(np.array([1.0, 2.0]), 2) == [1.0, 2.0]


def test_every_guidance_entry_point_shares_the_bound(sd_pipe):
    with pytest.raises(ValueError, match="guidance must be at most 100"):
        nbd.trace(sd_pipe, "a red circle", steps=2, guidance=1e20)
    with pytest.raises(ValueError, match="guidance must be at most 100"):
        nbd.RunControl().set_guidance(1e6)
    traj = nbd.trace(sd_pipe, "a red circle", steps=3, guidance=5.0, seed=0)
    with pytest.raises(ValueError, match="guidance must be"):
        traj.guided_x0(1, guidance=math.inf)
    with pytest.raises(ValueError, match="guidance must be at most 100"):
        nbd.branch(sd_pipe, traj, at=0, guidance=500.0)
    assert nbd.trace(sd_pipe, "a red circle", steps=2, guidance=MAX_GUIDANCE, seed=0)[-1].latents.isfinite().all()


@pytest.mark.parametrize("size", [20000, 4097, (5000, 8), (8, 5000), (0, 8), (8.5, 8), (True, 8), 0, -1, 2.0, "big",
                                  (8, 8, 8)])
def test_picture_size_is_bounded(sd_pipe, size):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=5.0, seed=0)
    with pytest.raises(ValueError, match="size must be .*4096"):
        traj.image(-1, size=size)


def test_picture_size_in_range_passes(sd_pipe):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=5.0, seed=0)
    assert traj.image(-1, size=(12, 40), decoder="approx").size == (12, 40)
    assert max(traj.image(-1, size=24, decoder="approx").size) == 24


@pytest.mark.parametrize("hold, kind", [(math.nan, ValueError), (1e9, ValueError), (-1, ValueError), (61, ValueError),
                                        (math.inf, ValueError), ("2", TypeError), (None, TypeError)])
def test_gif_hold_is_bounded(sd_pipe, tmp_path, hold, kind):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=5.0, seed=0)
    with pytest.raises(kind, match="hold_last must be a number from 0 to 60 seconds"):
        traj.to_gif(tmp_path / "run.gif", hold_last=hold)
    assert not (tmp_path / "run.gif").exists()
    traj.to_gif(tmp_path / "ok.gif", hold_last=60, size=16)
    assert (tmp_path / "ok.gif").stat().st_size > 0


@pytest.mark.parametrize("size, kind", [("output", TypeError), (5000, ValueError), (0, ValueError), (2.5, TypeError)])
def test_html_page_size_is_bounded(sd_pipe, tmp_path, size, kind):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=5.0, seed=0)
    with pytest.raises(kind, match="size must be an int between 1 and 4096"):
        traj.to_html(tmp_path / "run.html", size=size)
    assert not (tmp_path / "run.html").exists()
