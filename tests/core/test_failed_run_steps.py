"""A run that fails hands the steps it made to whoever catches the error."""
import pytest

import nbdiffuse as nbd


class Boom(Exception):
    pass


def fail_at(k):
    def on_step(traj, step):
        if step.index == k:
            raise Boom(f"callback failed at step {k}")
    return on_step


def test_trace_error_carries_the_steps_made(sd_pipe):
    with pytest.raises(Boom) as caught:
        nbd.trace(sd_pipe, "a red circle", steps=6, guidance=4.0, seed=0, on_step=fail_at(3))
    traj = caught.value.trajectory
    assert isinstance(traj, nbd.Trajectory) and len(traj) == 4 and traj.stopped and "Boom" in traj.error
    assert any("4 step(s)" in note and ".trajectory" in note for note in caught.value.__notes__)
    assert traj.image(-1, decoder="approx").size[0] > 0  # the steps are usable: a picture, a branch
    assert len(nbd.branch(sd_pipe, traj, at=2)) == 6


def test_branch_error_carries_the_branchs_steps(sd_pipe):
    parent = nbd.trace(sd_pipe, "a red circle", steps=6, guidance=4.0, seed=0)
    with pytest.raises(Boom) as caught:
        nbd.branch(sd_pipe, parent, at=1, guidance=6.0, on_step=fail_at(4))
    assert caught.value.trajectory is not parent and len(caught.value.trajectory) == 5


def test_an_error_that_takes_no_attributes_still_goes_through(sd_pipe):
    class Slotted(Exception):
        __slots__ = ()

    def on_step(traj, step):
        raise Slotted("no room")

    with pytest.raises(Slotted):
        nbd.trace(sd_pipe, "a red circle", steps=2, guidance=4.0, seed=0, on_step=on_step)
