"""GenericPipeline: what nbdiffuse knows about a pipeline outside the known families that it only watches.

Such a pipeline runs its own loop (core/generic.py) and nbdiffuse sees its latents through
diffusers' callback_on_step_end: sizes, channels and defaults come from here; there is no predict().
What such a run cannot give, and why, is core/capabilities.py's to say.
"""
from __future__ import annotations

import functools
import inspect
import re
from typing import Any

import torch

from .base import denoiser_of, own_guidance


class GenericPipeline:
    """What nbdiffuse knows about a pipeline it only watches: sizes, channels, defaults. No predict()."""

    name = "generic"
    guidance_kind = "pipeline"  # whatever the pipeline does with guidance_scale; nothing to re-weigh

    def __init__(self, pipe: Any):
        self.pipe = pipe

    @functools.cached_property
    def parameters(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(type(self.pipe).__call__).parameters)

    @property
    def denoiser(self) -> Any:
        return denoiser_of(self.pipe)

    @functools.cached_property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @functools.cached_property
    def dtype(self) -> torch.dtype:
        module = self.denoiser
        return module.dtype if module is not None else self.pipe.dtype

    @property
    def vae_factor(self) -> int:
        factor = getattr(self.pipe, "vae_scale_factor", None)
        if isinstance(factor, int) and factor > 0:
            return factor
        vae = getattr(self.pipe, "vae", None)
        blocks = getattr(getattr(vae, "config", None), "block_out_channels", None)
        return 2 ** (len(blocks) - 1) if blocks else 8

    @property
    def latent_channels(self) -> int | None:
        vae = getattr(self.pipe, "vae", None)
        channels = getattr(getattr(vae, "config", None), "latent_channels", None)
        if channels is None and self.denoiser is not None:
            channels = self.denoiser.config.get("in_channels")
        return None if channels is None else int(channels)

    @property
    def default_guidance(self) -> float:
        return own_guidance(self.parameters, 7.5)

    def default_size(self) -> tuple[int, int] | None:
        """(height, width) the pipeline makes when given none, where nbdiffuse can tell; else None.

        In the order pipe(...) decides it: its __call__'s own defaults (Sana: height=1024), a number its
        body falls back to (ZImagePipeline: `height = height or 1024`), its get_default_resolution() where its
        body calls it (PRXPipeline: pixels), its default_sample_size where its body uses that (Flux-like,
        QwenImage; PRXPixelPipeline's, in its config, at a VAE factor of 1), else its denoiser's sample_size."""
        defaults = [getattr(self.parameters.get(k), "default", None) for k in ("height", "width")]
        if all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in defaults):
            return defaults[0], defaults[1]
        body = self._call_source()
        found = [re.search(rf"\b{k}\s*=\s*{k}\s+or\s+(\d+)\b", body) for k in ("height", "width")]
        if all(found):
            return int(found[0].group(1)), int(found[1].group(1))
        if "self.get_default_resolution()" in body:  # PRXPipeline: `height = height or default_resolution`, in pixels
            side = getattr(self.pipe, "get_default_resolution", lambda: None)()
            if isinstance(side, int) and not isinstance(side, bool) and side > 0:
                return side, side
        # its own attribute (Flux-like), else its config's (PRXPixelPipeline): not through the pipeline's attribute
        # lookup, which diffusers deprecates for config entries
        own = vars(self.pipe).get("default_sample_size")
        if own is None:
            own = dict(getattr(self.pipe, "config", None) or {}).get("default_sample_size")
        sample = self.denoiser.config.get("sample_size") if self.denoiser is not None else None
        if sample is None or ("default_sample_size" in body and own is not None):
            sample = own
        if isinstance(sample, (list, tuple)) and sample:
            return int(sample[0]) * self.vae_factor, int(sample[-1]) * self.vae_factor
        if isinstance(sample, int):
            return sample * self.vae_factor, sample * self.vae_factor
        return None

    def sizes_itself(self) -> bool:
        """Whether pipe(...) given no height picks its own size (a default in its signature, or a fallback in its
        body: `height = height or ...`) rather than the size of the picture it is given (ControlNet-XS)."""
        default = getattr(self.parameters.get("height"), "default", None)
        if isinstance(default, int) and not isinstance(default, bool):
            return True
        return re.search(r"\bheight\s*=\s*height\s+or\b", self._call_source()) is not None

    def _call_source(self) -> str:
        try:
            return inspect.getsource(type(self.pipe).__call__)
        except (OSError, TypeError):
            return ""

    def text_readers(self) -> list:
        return []
