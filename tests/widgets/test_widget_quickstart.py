"""examples/01_quickstart.ipynb and 08_workshop_mode.ipynb run top to bottom offline on a CPU."""


def test_quickstart_runs_top_to_bottom(run_notebook):
    _, text, views, _ = run_notebook("01_quickstart", cell_timeout=600)
    assert "status: done, steps done: 20 / 20" in text
    assert views, "the Explorer was not displayed"


def test_workshop_notebook_runs_top_to_bottom(run_notebook):
    _, text, views, _ = run_notebook("08_workshop_mode", cell_timeout=600)
    assert "workshop: 2 runs, 4 files exported, has model: False" in text
    assert "the composition locks in at step" in text and "Seed: 0" in text
    assert views
