"""nbd.SweepView: the grid's state, the shared scrubber's frames, the adherence strip, opening a cell
in the Explorer, exports, and a sweep that fills in live."""
import pytest
from PIL import Image

import nbdiffuse as nbd


@pytest.fixture(scope="module")
def shapes_sweep():
    return nbd.sweep(None, "big red circle on the left, white background",
                     axes={"seed": [0, 1], "guidance": [1.0, 6.0]}, steps=3, progress=False)


def test_grid_state(shapes_sweep, tmp_path):
    view = nbd.SweepView(shapes_sweep, export_dir=tmp_path)
    grid = view.grid
    assert grid.rows == ["seed 0", "seed 1"] and grid.columns == ["guidance 1", "guidance 6"]
    assert grid.done == grid.total == 4 and grid.max_steps == 3
    for cell in grid.cells:
        assert cell["status"] == "done" and cell["steps"] == 3
        assert len(cell["x0"]) == len(cell["xt"]) == 3 and all(cell["x0"])
        assert len(cell["heat"]) == 3 and all(0.0 <= v <= 1.0 for v in cell["heat"])
    assert "adherence" in grid.heat_note
    explorer = view.open_cell(3)
    assert explorer.history[0] is shapes_sweep.cells[3].run and view.grid.selected == 3
    assert view.children[1].children == (explorer,)
    grid.step = 1
    png = view.to_png()
    assert png.is_file() and Image.open(png).size[0] > 2 * 128
    index = view.save()
    assert index.is_file() and nbd.Sweep.load(index.parent).shape == (2, 2)
    explorer.close()


def test_messages_from_the_page(shapes_sweep, tmp_path):
    view = nbd.SweepView(shapes_sweep, export_dir=tmp_path)
    view._on_msg(view.grid, {"type": "png"}, [])
    assert view.grid.message.startswith("saved ") and (tmp_path / "sweep.png").is_file()
    view._on_msg(view.grid, {"type": "open", "i": 99}, [])
    assert "IndexError" in view.grid.message


def test_no_heat_strip_for_other_models(sd_pipe):
    sweep = nbd.sweep(sd_pipe, "a cat", axes={"guidance": [1.0, 3.0]}, steps=1, progress=False)
    view = nbd.SweepView(sweep)
    assert view.grid.heat_note == "" and all(c["heat"] == [] for c in view.grid.cells)


def test_fills_in_live(sd_pipe):
    sweep = nbd.sweep(sd_pipe, "a cat", axes={"seed": [0, 1, 2]}, steps=1, progress=False, wait=False)
    view = nbd.SweepView(sweep)
    assert sweep.wait(60)
    assert view.grid.done == 3 and all(c["status"] == "done" for c in view.grid.cells)


def test_refuses_what_is_not_a_sweep():
    with pytest.raises(TypeError, match="sweep must be an nbd.Sweep"):
        nbd.SweepView([1, 2])


def test_sweeps_notebook_runs(run_notebook):
    _, text, views, _ = run_notebook("11_sweeps_and_walks", cell_timeout=600)
    assert "ends are the seeds' runs: True" in text and "same runs: True" in text
    assert views  # the SweepView (and the loading bars, widgets too in a kernel)
