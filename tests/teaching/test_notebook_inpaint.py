"""examples/13_inpainting.ipynb (repaint part of a picture, keep the rest) runs top to bottom offline on a CPU with
the embedded model's inpainting pipeline."""
from __future__ import annotations

import pytest

CELL_TIMEOUT = 300  # s per cell


@pytest.mark.slow
def test_inpainting_notebook_runs_top_to_bottom(run_notebook):
    _, text, views, seconds = run_notebook("13_inpainting", cell_timeout=CELL_TIMEOUT)
    print(f"13_inpainting: {seconds:.1f} s")
    assert views, "13_inpainting displayed no widget"
    assert "StableDiffusionInpaintPipeline" in text and "repainted share: 0.5" in text, text[-2000:]
    assert "kept half the same under another prompt: True" in text, text[-2000:]
    assert "repainted half the same: False" in text, text[-2000:]
    assert "steps run: [4, 9, 12, 15]" in text, text[-2000:]
    assert "kept half untouched by the branch: True" in text, text[-2000:]  # SD's inpainting runs its family loop
