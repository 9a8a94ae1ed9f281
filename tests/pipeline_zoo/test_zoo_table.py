"""The matrix's table is complete (every diffusers class with callback_on_step_end is built, refused with a
reason, or listed as not built yet) and README.md shows it as zoo_table.py makes it."""
from __future__ import annotations

import diffusers

from cases import CASES
import zoo_table


def test_every_class_with_a_step_callback_has_a_row():
    names = zoo_table.callback_pipelines()
    assert len(names) > 150  # diffusers 0.42 has 201: a broken enumeration would find few
    rows = {name: (status, note) for name, status, note in zoo_table.rows()}
    assert set(rows) == set(names)
    unlisted = [name for name, (status, _) in rows.items() if status == zoo_table.UNLISTED]
    assert not unlisted, f"build, refuse (zoo_table.REFUSED) or list (zoo_table.NOT_BUILT): {unlisted}"
    for name, (status, note) in rows.items():
        assert status in zoo_table.STATUSES and note, name


def test_the_lists_name_real_classes_that_take_the_callback_once():
    names = set(zoo_table.callback_pipelines())
    built = [case.cls for case in CASES]
    assert set(built) <= names and len(set(built)) == len(built)
    assert set(zoo_table.NOT_BUILT) <= names and not set(zoo_table.NOT_BUILT) & set(built)
    assert all(zoo_table.NOT_BUILT.values())  # each with its reason
    assert not [name for name in zoo_table.NOT_BUILT if zoo_table.refusal(name)]


def test_a_class_diffusers_adds_is_unlisted_until_someone_decides(monkeypatch):
    class NewPicturePipeline(diffusers.DiffusionPipeline):
        def __call__(self, prompt, callback_on_step_end=None):
            return None

    monkeypatch.setattr(diffusers, "NewPicturePipeline", NewPicturePipeline, raising=False)
    names = zoo_table.callback_pipelines()
    assert "NewPicturePipeline" in names
    monkeypatch.setattr(zoo_table, "callback_pipelines", lambda: names)
    assert ("NewPicturePipeline", zoo_table.UNLISTED) in [(name, status) for name, status, _ in zoo_table.rows()]


def test_readme_shows_the_table():
    text = zoo_table.README.read_text(encoding="utf-8")
    assert zoo_table.readme_block(text) == zoo_table.markdown(), \
        "README.md's pipeline table is out of date: python tests/pipeline_zoo/zoo_table.py --write"
