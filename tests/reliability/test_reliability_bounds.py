"""Bounds: ex.history keeps at most max_runs runs and says how many it dropped; the frame cache is an LRU."""
from __future__ import annotations

import pytest

from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.explorer import run_tree
from nbdiffuse.widgets.explorer.run_tree import FrameCache
from reliability_helpers import WAIT


def run(ex, **params):
    ex.generate(**params)
    assert ex.wait(WAIT) and ex.status == "done", ex.error


def labels(fe):
    return [node["label"] for node in fe.state["runs"]]


def test_history_keeps_max_runs_drops_the_oldest_and_says_so(explorer):
    ex, fe = explorer(steps=2, max_runs=3)
    assert ex.max_runs == 3 and fe.state["runs_dropped"] == 0
    made = []
    for seed in range(6):
        run(ex, seed=seed)
        made.append(ex.trajectory.id)
    assert [traj.params["seed"] for traj in ex.history] == [3, 4, 5]
    assert ex.runs_dropped == fe.state["runs_dropped"] == 3
    assert labels(fe) == ["#4", "#5", "#6"], "labels count every run made: they never shift"
    assert len(fe.state["run_thumbs"]) == 3 and len(ex._thumbs) == 3
    assert not any(run_id in ex._frames for run_id in made[:3]), "a dropped run's frames go with it"
    # Loading and comparing work on what is kept; a dropped run is refused by name.
    ex.load_run(0)
    assert fe.state["shown_run"] == ex.history[0].id
    ex.compare(0, 2)
    assert (fe.state["comparison"]["label_a"], fe.state["comparison"]["label_b"]) == ("#4", "#6")
    with pytest.raises(ValueError, match="run index in 0..2"):
        ex.load_run(3)


def test_a_branch_keeps_its_parent_and_an_orphan_says_its_parent_was_dropped(explorer):
    ex, fe = explorer(steps=4, max_runs=2)
    run(ex, seed=0)
    run(ex, seed=1)
    parent = ex.load_run(0)  # the oldest run
    ex.branch(1, guidance=9.0)
    assert ex.wait(WAIT) and ex.status == "done"
    branch = ex.trajectory
    # Over the limit, but the oldest run is the new branch's parent: the run in between goes.
    assert ex.history == [parent, branch] and ex.runs_dropped == 1
    nodes = fe.state["runs"]
    assert [n["label"] for n in nodes] == ["#1", "#3"] and nodes[1]["depth"] == 1
    run(ex, seed=2)
    assert ex.history[0] is branch and ex.runs_dropped == 2
    orphan = fe.state["runs"][0]
    assert orphan["label"] == "#3" and orphan["depth"] == 0 and "parent not loaded or dropped" in orphan["changed"]


def test_max_runs_none_keeps_every_run_and_the_user_may_trim(explorer):
    ex, fe = explorer(steps=2, max_runs=None)
    for seed in range(4):
        run(ex, seed=seed)
    assert len(ex.history) == 4 and ex.runs_dropped == 0
    del ex.history[:3]  # the user's own trimming: not counted as dropped by the bound
    run(ex, seed=9)
    assert len(ex.history) == 2 and ex.runs_dropped == 0 and labels(fe) == ["#4", "#5"]
    ex.max_runs = 1  # a new bound applies when the next run ends
    run(ex, seed=10)
    assert len(ex.history) == 1 and ex.runs_dropped == 2 and labels(fe) == ["#6"]


@pytest.mark.parametrize("value, error", [(0, ValueError), (-5, ValueError), (2.5, TypeError), ("10", TypeError),
                                          (True, TypeError)])
def test_bad_max_runs_is_refused_naming_it(pipe, value, error):
    with pytest.raises(error, match="max_runs"):
        Explorer(pipe, max_runs=value)


def test_default_bound_is_documented():
    assert run_tree.MAX_RUNS == 50 and run_tree.FRAME_CACHE_RUNS == 16
    assert "max_runs (default 50" in Explorer.__doc__ and "16 runs" in Explorer.__doc__


def test_frame_cache_is_an_lru_bounded_in_runs():
    cache = FrameCache(2)
    cache.put("a", (["a"], ["a"]))
    cache.put("b", (["b"], ["b"]))
    assert cache.get("a") == (["a"], ["a"])  # a is now the most recently used
    cache.put("c", (["c"], ["c"]))
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    cache.discard("a")
    assert len(cache) == 1 and cache.get("a") is None
    with pytest.raises(ValueError, match="max_runs"):
        FrameCache(0)


def test_explorer_frame_cache_stays_bounded_and_an_evicted_run_still_loads(explorer, monkeypatch):
    monkeypatch.setattr(run_tree, "FRAME_CACHE_RUNS", 2)
    ex, fe = explorer(steps=3)
    run(ex, seed=0)
    first_frames = list(fe.state["frames_x0"])
    for seed in (1, 2, 3):
        run(ex, seed=seed)
    assert len(ex._frames) == 2 and ex.history[0].id not in ex._frames
    ex.load_run(0)  # re-encoded from the run's latents: the same frames the live run showed
    assert fe.state["frames_x0"] == first_frames and fe.state["n_steps"] == 3
    assert len(ex._frames) == 2 and ex.history[0].id in ex._frames
