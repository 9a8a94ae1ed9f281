"""ForwardExplorer: watch one picture dissolve into noise as t grows, in pixel and in latent space."""
from __future__ import annotations

from typing import Any

import torch
import traitlets as tl
from PIL import Image

from ...core import schedule_math as sm
from ...core.decode import full_decode, to_pil
from ...core.pipe_decoder import decoder_of
from ...core.validate import check_int, check_seed
from .common import (TeachingWidget, as_image, fit_for_display, jpeg, lossless, model_label, model_size, resolve_pipe,
                     to_tensor, vae_encode)

SPACES = ("pixel", "latent")
PIXEL_DISPLAY = 256  # longest side kept for the pixel-space frames


class ForwardExplorer(TeachingWidget):
    """The forward (noising) process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, with one fixed eps.

    `nbd.ForwardExplorer(image=None, pipe=None, positions=41, seed=0)`. image: a PIL image, a file
    path, PNG/JPEG bytes, an array or a shapes caption (None: a shapes render). The picture is
    resized to the pipeline's size and noised in pixel space and, through the pipeline's VAE, in
    latent space; the frames at `positions` timesteps are computed once and live in the widget's
    state, so the slider is instant and a saved notebook keeps them.
    """

    timesteps = tl.List(tl.Int()).tag(sync=True)  # the t of each frame (slider positions)
    index = tl.Int(0).tag(sync=True)  # the slider: frame shown
    original = tl.Bytes(b"").tag(sync=True)
    frames_pixel = tl.List(tl.Bytes()).tag(sync=True)
    frames_latent = tl.List(tl.Bytes()).tag(sync=True)
    schedule = tl.Dict().tag(sync=True)  # ScheduleTable.to_dict(): t, abar, snr_db, sigma per training timestep
    image_size = tl.List(tl.Int(), default_value=[0, 0]).tag(sync=True)
    latent_shape = tl.List(tl.Int()).tag(sync=True)

    def __init__(self, image: Any = None, pipe: Any = None, positions: int = 41, seed: int = 0):
        positions = check_int("positions", positions, 2, 201)
        self.seed = check_seed(seed)
        self.pipe = resolve_pipe(pipe)
        size = model_size(self.pipe)
        self.image = as_image(image).resize(size, Image.LANCZOS)
        self.table = sm.schedule_table(self.pipe)
        total = len(self.table)
        # Evenly spaced t from 0 to T-1: the last frame is the noisiest the model was trained on.
        steps = sorted({round(i * (total - 1) / (positions - 1)) for i in range(positions)})
        self.x0_pixel = to_tensor(self.image)
        self.x0_latent = vae_encode(self.pipe, self.x0_pixel)
        generator = torch.Generator("cpu").manual_seed(self.seed)
        # One eps for every t: the learner watches the same picture dissolve, not a new noise each frame.
        self.eps_pixel = torch.randn(self.x0_pixel.shape, generator=generator)
        self.eps_latent = torch.randn(self.x0_latent.shape, generator=generator)
        pixel_frames = [jpeg(fit_for_display(self.noisy(s, "pixel"), PIXEL_DISPLAY)) for s in steps]
        latent_frames = [jpeg(fit_for_display(self.noisy(s, "latent"), PIXEL_DISPLAY)) for s in steps]
        super().__init__(_kind="forward", title="Forward process: adding noise",
                         note=f"xₜ = √ᾱₜ · x₀ + √(1 − ᾱₜ) · ε, with one fixed ε for every t; the noise schedule of "
                              f"{model_label(self.pipe)}",
                         timesteps=steps, index=0, original=lossless(fit_for_display(self.image, PIXEL_DISPLAY)),
                         frames_pixel=pixel_frames, frames_latent=latent_frames, schedule=self.table.to_dict(),
                         image_size=list(size), latent_shape=list(self.x0_latent.shape[1:]))

    @tl.validate("index")
    def _check_index(self, proposal: dict) -> int:
        return check_int("index", proposal["value"], 0, max(len(self.timesteps) - 1, 0))

    @property
    def t(self) -> int:
        """The timestep the slider shows."""
        return self.timesteps[self.index]

    @t.setter
    def t(self, value: int) -> None:
        value = check_int("t", value, 0, len(self.table) - 1)
        self.index = min(range(len(self.timesteps)), key=lambda i: abs(self.timesteps[i] - value))

    def noisy_tensor(self, t_: int, space: str = "pixel") -> torch.Tensor:
        """x_t as a tensor: (1, 3, H, W) pixels or (1, C, h, w) pipeline-space latents."""
        if space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(map(repr, SPACES))}; got {space!r}")
        x0, eps = (self.x0_pixel, self.eps_pixel) if space == "pixel" else (self.x0_latent, self.eps_latent)
        return sm.forward_noise(self.pipe, x0, t_, eps)

    def noisy(self, t_: int, space: str = "pixel") -> Image.Image:
        """x_t as a picture; in latent space, decoded by the pipeline's VAE."""
        x = self.noisy_tensor(t_, space)
        return to_pil(x) if space == "pixel" else full_decode(decoder_of(self.pipe), x)

    def coefficients(self, t_: int) -> dict[str, float]:
        """abar, SNR (dB) and sigma at t: the numbers the plot's cursor reads out."""
        check_int("t", t_, 0, len(self.table) - 1)
        return {"t": t_, "abar": self.table.abar[t_], "snr_db": self.table.snr_db[t_], "sigma": self.table.sigma[t_]}

    def __repr__(self) -> str:
        return f"ForwardExplorer(t={self.t}, frames={len(self.timesteps)}, size={tuple(self.image_size)})"
