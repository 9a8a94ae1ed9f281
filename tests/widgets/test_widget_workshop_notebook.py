"""examples/08_workshop_mode.ipynb runs top to bottom offline on a CPU (a real kernel, no browser)."""
from __future__ import annotations

import os
import pathlib

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_workshop_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    notebook = nbformat.read(ROOT / "examples" / "08_workshop_mode.ipynb", as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "workshop: 2 runs, 4 files exported, has model: False" in texts
    assert "the composition locks in at step" in texts and "Seed: 0" in texts
    assert [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
