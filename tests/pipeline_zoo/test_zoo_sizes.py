"""Sizes of pipelines that say them their own way: a default written in __call__ (#21 E4), a size the
pipeline changes (#21 E5)."""
from __future__ import annotations

import pytest

import nbdiffuse as nbd
from nbdiffuse.core.families import adapter_for
from nbdiffuse.core.pipe_size import spoken_size

import builders
from test_zoo_runs import built
from cases import CASES

E5 = "#21 E5: Kandinsky 3 rounds a side up to a multiple of 64; trace records the size asked"


def case_of(name):
    return next(case for case in CASES if case.cls == name)


def test_the_explorer_knows_a_default_size_written_in_call(open_explorer):
    """ZImagePipeline starts __call__ with `height = height or 1024`: no config says it."""
    pipe, _ = built(case_of("ZImagePipeline"))
    assert spoken_size(pipe) == (1024, 1024) == adapter_for(pipe).default_size()
    ex, fe = open_explorer(pipe, ignore_threads=("tqdm_monitor",))
    assert (ex.height, ex.width) == (1024, 1024) and fe.state["image_size"] == [1024, 1024]
    assert 1024 in fe.state["size_options"]


def test_a_default_size_in_the_signature():
    pipe, _ = built(case_of("Kandinsky3Pipeline"))
    assert adapter_for(pipe).default_size() == (1024, 1024)  # `height: int | None = 1024`


def test_a_pipeline_with_its_size_in_config_is_read_as_before():
    assert spoken_size(builders.sd()) is None  # height = height or self.default_sample_size * ...


@pytest.mark.xfail(strict=True, reason=E5)
def test_kandinsky3_records_the_size_it_ran():
    pipe, _ = built(case_of("Kandinsky3Pipeline"))
    traj = nbd.trace(pipe, "a red circle", steps=1, height=32, width=32)
    assert traj.image(-1, "xt", decoder="full", size="latent").size == (traj.params["width"], traj.params["height"])
