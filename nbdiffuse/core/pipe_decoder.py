"""Which module of a pipeline turns its latents into a picture, and how, under one face.

Most pipelines keep a `vae` that decodes `latents / scaling_factor (+ shift_factor)`: an
AutoencoderKL (SD, SDXL, SD3, Flux...) or another autoencoder that takes the same call (Sana's DC-AE,
AutoencoderDC). Some keep their decoder under another name and call it their own way: Kandinsky 3 a
`movq` (a VQModel decoded as is, without quantising), Stable Cascade's decoder a `vqgan` (latents times
its `scale_factor`, pictures in [0, 1]). decoder_of(pipe) gives the module to hand to core/decode.py:
the `vae` itself where that is how the pipeline decodes, else an OwnDecoder that decodes the
pipeline's way. A pipeline with none (a prior that makes image embeddings) gives None, and its runs
have no previews (core/generic.py asks has_decoder). encode_picture(pipe, pixels) goes the other way,
as the pipelines' image-to-image variants encode (the teaching widgets show a picture in the model's
latent space).
"""
from __future__ import annotations

import threading
import weakref
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import torch

from .decode import to_pipeline_space

# attribute name -> how the pipeline calls it: (z in the pipeline's space) -> picture in [-1, 1]
_OWN_WAYS: dict[str, Callable[[Any, torch.Tensor], torch.Tensor]] = {
    # Kandinsky3Pipeline: self.movq.decode(latents, force_not_quantize=True)["sample"]
    "movq": lambda movq, z: movq.decode(z, force_not_quantize=True, return_dict=False)[0],
    # StableCascadeDecoderPipeline: self.vqgan.decode(vqgan.config.scale_factor * latents).sample.clamp(0, 1)
    "vqgan": lambda vqgan, z: vqgan.decode(vqgan.config.scale_factor * z).sample.clamp(0, 1) * 2 - 1,
}
# the way back, as the pipelines' image-to-image variants encode: picture in [-1, 1] -> z in the pipeline's space
_OWN_ENCODES: dict[str, Callable[[Any, torch.Tensor], torch.Tensor]] = {
    # Kandinsky3Img2ImgPipeline: self.movq.encode(image)["latents"], unscaled
    "movq": lambda movq, x: movq.encode(x, return_dict=False)[0],
    # the inverse of the decode above: the vqgan reads [0, 1] pictures and the pipeline's z is its latents / scale_factor
    "vqgan": lambda vqgan, x: vqgan.encode((x + 1) / 2, return_dict=False)[0] / vqgan.config.scale_factor,
}
_made: "weakref.WeakKeyDictionary[Any, OwnDecoder]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class OwnDecoder:
    """A pipeline's decoder kept under another name than `vae`, decoded the pipeline's own way.

    It answers what core/decode.py asks of a VAE: parameters(), decode(z, return_dict=False) of
    pipeline-space latents (its config's scaling_factor is 1 and shift_factor 0: the scaling is the
    pipeline's, inside decode) and `upscale`, measured once by decoding a small latent.
    """

    def __init__(self, module: Any, name: str):
        self.module, self.name = module, name
        self.latent_channels = _latent_channels(module)
        self.config = SimpleNamespace(scaling_factor=1.0, shift_factor=0.0, force_upcast=False)
        self._upscale: int | None = None

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.module.parameters()

    def decode(self, z: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        with torch.no_grad():
            return (_OWN_WAYS[self.name](self.module, z),)

    def encode_picture(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pictures in [-1, 1] -> latents in the pipeline's space (named apart from a VAE's
        `encode`, which core/decode.py takes to mean an AutoencoderKL's)."""
        with torch.no_grad():
            return _OWN_ENCODES[self.name](self.module, pixels)

    @property
    def upscale(self) -> int:
        """Output pixels per latent pixel along a side (TinyDecoder's name for it, which decode.upscale reads)."""
        if self._upscale is None:
            param = next(self.module.parameters())
            probe = torch.zeros(1, self.latent_channels, 4, 4, device=param.device, dtype=param.dtype)
            self._upscale = max(1, int(self.decode(probe)[0].shape[-1]) // 4)
        return self._upscale

    def __repr__(self) -> str:
        return f"OwnDecoder({self.name}: {type(self.module).__name__})"


def _latent_channels(module: Any) -> int:
    config = module.config
    for key in ("latent_channels", "vq_embed_dim", "in_channels"):
        value = config.get(key) if hasattr(config, "get") else getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 4


def decoder_name(pipe: Any) -> str | None:
    """The attribute of `pipe` that holds its decoder ("vae", "movq", "vqgan"), or None."""
    if pipe is None:
        return None
    for name in ("vae", *_OWN_WAYS):
        if getattr(pipe, name, None) is not None:
            return name
    return None


def has_decoder(pipe: Any) -> bool:
    return decoder_name(pipe) is not None


def decoder_of(pipe: Any) -> Any:
    """The module that draws `pipe`'s latents (its `vae`, or an OwnDecoder), or a ValueError saying there is none."""
    name = decoder_name(pipe)
    if name is None:
        raise ValueError(f"{type(pipe).__name__} has no decoder (no vae, movq or vqgan): its latents have no "
                         "picture form here, so its runs show no pictures; their steps are recorded all the same")
    module = getattr(pipe, name)
    if name == "vae":
        return module
    with _lock:
        made = _made.get(module)
        if made is None:
            made = _made[module] = OwnDecoder(module, name)
        return made


def encode_picture(pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) pictures in [-1, 1] -> (N, C, h, w) float latents on the CPU, in the space `pipe` denoises:
    its VAE's mean (AutoencoderKL) or latent (AutoencoderDC), scaled; or its own decoder's way back (movq,
    vqgan). A ValueError says so for a pipeline with no decoder."""
    decoder = decoder_of(pipe)
    param = next(decoder.parameters())
    pixels = pixels.to(param.device, param.dtype)
    if isinstance(decoder, OwnDecoder):
        return decoder.encode_picture(pixels).float().cpu()
    with torch.no_grad():
        out = decoder.encode(pixels)
    dist = getattr(out, "latent_dist", None)
    latents = dist.mean if dist is not None else getattr(out, "latent", None)
    if latents is None:
        raise ValueError(f"{type(pipe).__name__}'s vae ({type(decoder).__name__}) encodes to "
                         f"{type(out).__name__}, which holds no latents nbdiffuse knows (latent_dist, latent)")
    return to_pipeline_space(decoder, latents.float()).cpu()
