"""The shapes model's approx decoder, fitted to its own VAE's decoder on its own world.

Synthetic colour blocks suit VAEs trained on natural images; the shapes VAE has only seen shapes
on plain backgrounds and its decoder is far from linear, and the UNet's x0 predictions stray off
the encoder's manifold. So the fit targets what the decoder shows for the latents previews will
actually show: x0 predictions of the model's own runs, plus latents of renders and perturbations
around them, with a 3 x 3 neighbourhood and one hidden layer of 64 ReLU units, which also sees
the whole latent's per-channel mean and standard deviation (global context: the VAE's decoder
has attention, so one local latent can decode white on one picture and light blue on another).

Measured on 24 held-out runs (x0 at steps 1, 2, 4, 7 and 12 of 12), mean error of 255 against
the decoder's picture at latent size: 28 for the linear 3 x 3 fit, 14.3 with 16 hidden units,
13.0-13.9 with 64 (final frames 7.8), 9.6 with 64 and the global context (final frames 5.7). The
quickstart's "big red circle on the left, white background" (8 seeds, 30 steps, final x0) was
off by 26 without the global context, its white background drawn light blue (192, 226, 250 for
the VAE's 249, 249, 250), and is off by 11 with it. The global context costs ~0.1 ms a step
(both views: 0.41 -> 0.53 ms); a 3 x 3 second layer gained only 0.8, not worth a new file format.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def fit_shapes_approx(pipe: Any, renders: int = 128, runs: int = 48, seed: int = 10_000, steps: int = 3000):
    import torch

    from ..core.decode import ApproxDecoder, to_pipeline_space
    from ..core.trace import trace
    from .grammar import random_caption
    from .render import render

    vae = pipe.vae
    images = np.stack([np.asarray(render(random_caption(seed=seed + i), seed=seed + i)) for i in range(renders)])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = to_pipeline_space(vae, vae.encode(pixels * 2 - 1).latent_dist.mean.float())
    around = [z, z + 0.5 * torch.randn(z.shape, generator=generator)]
    for i in range(runs):  # what live previews show: x0 predictions along real runs
        traj = trace(pipe, random_caption(seed=seed + 5_000 + i, omit=0.3).text(), steps=12,
                     guidance=float(1 + i % 8), seed=i)
        around.append(torch.stack([traj[k].pred_x0.float() for k in (0, 1, 3, 6, 11)]))
    return ApproxDecoder.fit_hidden(vae, torch.cat(around), kernel=3, hidden=64, steps=steps, seed=seed,
                                    global_context=True)


def write_shapes_approx(pipe: Any, folder: Path, quick: bool = False) -> None:
    """Fit and save the approx decoder; quick: a rough fit in seconds, for a model trained only a
    few steps (a smoke run), whose pictures are not worth the minute a careful fit takes."""
    from ..core.loading import APPROX_FILE

    fitted = fit_shapes_approx(pipe, renders=32, runs=4, steps=200) if quick else fit_shapes_approx(pipe)
    Path(folder, APPROX_FILE).write_text(json.dumps(fitted.to_dict()), encoding="utf-8")
