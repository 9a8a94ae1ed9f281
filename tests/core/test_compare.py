import pytest

import nbdiffuse as nbd
from nbdiffuse.core.compare import compare


def test_a_branch_matches_its_parent_until_the_branch_point(sd_pipe):
    traj = nbd.trace(sd_pipe, "red circle", steps=6, guidance=3.0, seed=4)
    child = nbd.branch(sd_pipe, traj, at=2, guidance=12.0)
    result = compare(traj, child)
    assert len(result) == 6 and result.pairs[0] == (0, 0)
    assert result.difference[:3] == [0.0, 0.0, 0.0]
    assert result.difference[-1] > 0
    assert result.heatmap(-1, size=64).size == (64, 64)
    assert 0 <= result.locks_in_at < 6


def test_runs_of_different_lengths_align_by_fraction(sd_pipe):
    a = nbd.trace(sd_pipe, "red circle", steps=4, seed=1)
    b = nbd.trace(sd_pipe, "red circle", steps=8, seed=1)
    result = compare(a, b)
    assert len(result) == 8 and result.pairs[0] == (0, 0) and result.pairs[-1] == (3, 7)


def test_compare_bad_input(sd_pipe):
    a = nbd.trace(sd_pipe, "red circle", steps=2, seed=1)
    with pytest.raises(ValueError, match="b must be a Trajectory"):
        compare(a, "b")
    with pytest.raises(ValueError, match="view must be one of"):
        compare(a, a, view="z")
    other = nbd.trace(sd_pipe, "red circle", steps=2, seed=1, height=24)
    with pytest.raises(ValueError, match="different sizes"):
        compare(a, other)


def test_an_x_t_comparison_measures_and_draws_the_noisy_latents(sd_pipe):
    a = nbd.trace(sd_pipe, "red circle", steps=4, seed=1)
    b = nbd.trace(sd_pipe, "red circle", steps=4, seed=2)
    on_x0, on_xt = compare(a, b), compare(a, b, view="xt")
    assert on_xt.view == "xt" and on_x0.view == "x0"
    assert on_xt.difference != on_x0.difference
    # The heatmap follows the view compared unless told otherwise.
    assert on_xt.heatmap(0, size=16).tobytes() == on_x0.heatmap(0, view="xt", size=16).tobytes()
    assert on_xt.heatmap(0, size=16).tobytes() != on_x0.heatmap(0, size=16).tobytes()


def test_runs_with_x_t_alone_are_compared_on_x_t_unless_told_otherwise(sd_pipe, generic_pipe, xt_only_pipe):
    # A watched pipeline whose sampler sees only windows of x_t (a wide Panorama): x_t alone.
    a = nbd.trace(xt_only_pipe, "red circle", steps=2, seed=1, height=16, width=160)
    b = nbd.trace(xt_only_pipe, "red circle", steps=2, seed=2, height=16, width=160)
    both = nbd.trace(sd_pipe, "red circle", steps=3, seed=1), nbd.trace(sd_pipe, "red circle", steps=3, seed=2)
    assert compare(*both).view == "x0"
    watched = nbd.trace(generic_pipe, "red circle", steps=3, seed=1), nbd.trace(generic_pipe, "red circle", steps=3, seed=2)
    assert compare(*watched).view == "x0"  # a watched pipeline whose x0 is read from its sampler
    result = compare(a, b)
    assert result.view == "xt" and len(result) == 2 and result.difference[-1] > 0
    with pytest.raises(ValueError, match="x0"):
        compare(a, b, view="x0")
