"""examples/12_control.ipynb (ControlNet: where control acts, what start/end do) runs top to bottom
offline on a CPU with the embedded model's outline ControlNet."""
from __future__ import annotations

import pytest

from nbdiffuse.core.controlnet_loading import OUTLINE_FOLDER

CELL_TIMEOUT = 300  # s per cell


@pytest.mark.slow
@pytest.mark.skipif(not (OUTLINE_FOLDER / "config.json").is_file(),
                    reason="the outline ControlNet is not shipped in this checkout (python -m "
                           "nbdiffuse.shapes.train_controlnet makes it)")
def test_control_notebook_runs_top_to_bottom(run_notebook):
    _, text, views, seconds = run_notebook("12_control", cell_timeout=CELL_TIMEOUT)
    print(f"12_control: {seconds:.1f} s")
    assert views, "12_control displayed no widget"
    assert "control acts at steps 1-12 of 12" in text, text[-2000:]
    assert "window 0.6-1.0: acts at steps [9, 10, 11, 12]" in text, text[-2000:]  # diffusers' rule, 12 steps
    assert "no control from step 2: strengths [" in text and ", 0.0, 0.0]" in text, text[-2000:]
    assert "each step's scales: [1.0, 1.0] (one per ControlNet)" in text, text[-2000:]  # two ControlNets
