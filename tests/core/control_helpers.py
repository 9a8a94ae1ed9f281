"""What the ControlNet tests share: a noise picture to steer with, and the check that a control scale set to 0
live after a step is the run planned so."""
import numpy as np
import torch
from PIL import Image

import nbdiffuse as nbd


def picture(seed=0, side=16):
    """A seeded picture of random colours (a control picture every ControlNet reads as something)."""
    return Image.fromarray((np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8))


def assert_live_scale_is_the_plan(pipe, prompt, at: int, **run):
    """Set the control scale to 0 from `on_step` after step `at`: the run equals the one planned with scale 1
    up to `at` and 0 after; returns that planned run."""
    control = nbd.RunControl()

    def on_step(traj, step):
        if step.index == at:
            control.set_control_scale(0.0)

    live = nbd.trace(pipe, prompt, control=control, on_step=on_step, **run)
    planned = nbd.trace(pipe, prompt, control_scale=[1.0] * (at + 1) + [0.0] * (run["steps"] - at - 1), **run)
    assert torch.equal(live.final_latents, planned.final_latents)
    return planned
