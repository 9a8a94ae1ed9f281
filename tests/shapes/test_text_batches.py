"""Caption batches made ahead in worker processes are the batches made inline, step for step."""
import time

import numpy as np
import pytest

from nbdiffuse.shapes.training import loops
from nbdiffuse.shapes.model import get_preset
from nbdiffuse.shapes.render import render_pool
from nbdiffuse.shapes.text_batches import TextBatches
from nbdiffuse.shapes.tokenizer import build_tokenizer


@pytest.mark.parametrize("options", [{}, {"noise": {"shape": 0.2}, "pair_share": 0.4}])
def test_worker_batches_equal_inline_batches(tmp_path, options):
    tokenizer = build_tokenizer(tmp_path / "tok")
    captions, _ = render_pool(64, seed=5, workers=1)
    inline = TextBatches(captions, tokenizer, tmp_path / "tok", seed=5, batch=16, **options)
    ahead = TextBatches(captions, tokenizer, tmp_path / "tok", seed=5, batch=16, workers=1, ahead=3, **options)
    try:
        ahead.prefetch(0)
        for step in (0, 1, 2, 3, 4, 9, 10):  # a jump (4 -> 9) drops what was made ahead
            (i1, ids1), (i2, ids2) = inline.get(step), ahead.get(step)
            assert np.array_equal(i1, i2) and np.array_equal(ids1, ids2)
            assert ids1.shape == (16, tokenizer.model_max_length)
        assert not np.array_equal(inline.get(11)[1], inline.get(12)[1])
    finally:
        ahead.close()


def test_fit_steps_fills_the_budget_within_the_preset_cap():
    preset = get_preset("gpu")
    state = {"unet_step": 200}
    began = time.time() - 10.0  # 200 steps took 10 s: 0.05 s/step
    fitted = loops.fit_steps(state, preset, minutes=1.0, stage_began=began, timed_steps=200, seconds=10.0)
    assert 200 + 900 <= fitted <= 200 + 1000  # ~50 s left at 0.05 s/step
    assert state["fitted"]["unet_steps"] == fitted and state["fitted"]["seconds_per_step"] == 0.05
    assert loops.fit_steps(state, preset, 1e4, began, 200, 10.0) == preset.unet_steps
    assert loops.fit_steps(state, preset, 0.01, began, 200, 10.0) == 200  # budget already spent
