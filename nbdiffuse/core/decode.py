"""Latent -> RGB: a linear approximation fitted to each VAE, the full VAE, or a tiny AE.

The approx decoder is what makes live previews cheap: a C x 3 matrix and a bias (or a 3 x 3
"tiny conv"), fitted once per VAE by least squares against that VAE's own encoder (the same
idea as the hand-made factors in ComfyUI's latent_formats.py and A1111's "Approx cheap", but
derived for any latent format instead of copied from a table). A model folder may ship its
own fit as approx_decoder.json (the embedded shapes model does).
"""
from __future__ import annotations

import contextlib
import math
import threading
import weakref
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .pipe_attrs import shipped_approx


@dataclass
class ApproxDecoder:
    """RGB in [0, 1] ~= features(latents) . weight + bias, per latent pixel.

    kernel 1: the features are the C latent channels (a linear map, as the web UIs use);
    kernel 3: the 3 x 3 neighbourhood of each latent pixel (9 C features, a tiny conv), for VAEs
    whose colour is not a linear function of one latent pixel.
    hidden: for a VAE whose decoder is far from linear (the small shapes VAE), one ReLU layer of
    H units first: RGB ~= relu(features . hidden_weight + hidden_bias) . weight + bias, with weight
    (H, 3). Still a fraction of a millisecond per frame (fit_hidden).
    global_weight: the hidden layer also sees the whole latent's per-channel mean and standard
    deviation (2 C numbers, global_features): a VAE decoder with attention reads the whole picture,
    so one local latent can mean white on one picture and light blue on another.
    """

    weight: np.ndarray  # (kernel * kernel * C, 3), or (H, 3) after a hidden layer
    bias: np.ndarray  # (3,)
    kernel: int = 1
    hidden_weight: np.ndarray | None = None  # (kernel * kernel * C, H)
    hidden_bias: np.ndarray | None = None  # (H,)
    global_weight: np.ndarray | None = None  # (2 C, H): global_features -> hidden pre-activation

    def rgb(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """(C, H, W) latents -> (H, W, 3) uint8."""
        if isinstance(latents, torch.Tensor):
            return self.rgb_many([latents])[0]
        z = np.asarray(latents, np.float32)
        if z.ndim == 4:
            z = z[0]
        # tensordot, not einsum: einsum's path planning alone costs more than this product at preview sizes.
        features = _features(z, self.kernel)
        if self.hidden_weight is not None:
            offset = self.hidden_bias
            if self.global_weight is not None:
                offset = offset + global_features(torch.tensor(z)[None])[0].numpy() @ self.global_weight
            features = np.maximum(np.tensordot(features, self.hidden_weight, axes=(0, 0)) + offset, 0.0)
            features = features.transpose(2, 0, 1)
        rgb = np.tensordot(features, self.weight, axes=(0, 0)) + self.bias
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def rgb_many(self, latents: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Several (C, H, W) latents of one shape -> (H, W, 3) uint8 each, in one pass.

        conv2d calls: a quarter faster than the numpy features of rgb() at preview sizes, the same
        picture up to rounding (at most 1 of 255). One batch for a step's x0 and x_t halves the
        per-call overhead, which is most of the cost at latent resolution (it runs every step).
        """
        items = [item.detach().to("cpu", torch.float32) for item in latents]
        items = [item[0] if item.ndim == 4 else item for item in items]  # (1, C, H, W): its first latent
        if len({item.shape for item in items}) > 1:
            return [picture for item in items for picture in self.rgb_many([item])]
        z = torch.stack(items)
        first, last, glob = self._conv()
        padded = torch.nn.functional.pad(z, (1, 1, 1, 1), mode="replicate") if self.kernel == 3 else z
        out = torch.nn.functional.conv2d(padded, *first)
        if glob is not None:
            out += torch.mm(global_features(z), glob)[:, :, None, None]
        if last is not None:
            out = torch.nn.functional.conv2d(torch.relu_(out), *last)
        pixels = (out.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return list(pixels)

    def _conv(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None,
                             torch.Tensor | None]:
        """The layers as torch tensors, made once per decoder: conv2d (weight, bias) pairs for the
        k x k layer on the latents and (with a hidden layer) the 1 x 1 one on its ReLU, then the
        global_weight matrix (or None)."""
        made = self.__dict__.get("_conv_params")
        if made is None:
            def conv(weight: np.ndarray, bias: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
                channels, out = weight.shape[0] // (k * k), weight.shape[1]
                # features are ordered (dy, dx, channel): see _features
                w = torch.from_numpy(np.ascontiguousarray(weight, np.float32)).reshape(k, k, channels, out)
                return w.permute(3, 2, 0, 1).contiguous(), torch.from_numpy(np.asarray(bias, np.float32)).clone()

            glob = None if self.global_weight is None else torch.from_numpy(
                np.ascontiguousarray(self.global_weight, np.float32))
            if self.hidden_weight is None:
                made = (conv(self.weight, self.bias, self.kernel), None, glob)
            else:
                made = (conv(self.hidden_weight, self.hidden_bias, self.kernel), conv(self.weight, self.bias, 1), glob)
            self.__dict__["_conv_params"] = made
        return made

    def __call__(self, latents: torch.Tensor | np.ndarray) -> Image.Image:
        return Image.fromarray(self.rgb(latents))

    def to_dict(self) -> dict:
        data = {"weight": self.weight.tolist(), "bias": self.bias.tolist(), "kernel": self.kernel}
        if self.hidden_weight is not None:
            data.update(hidden_weight=self.hidden_weight.tolist(), hidden_bias=self.hidden_bias.tolist())
        if self.global_weight is not None:
            data.update(global_weight=self.global_weight.tolist())
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ApproxDecoder":
        weight = np.asarray(data["weight"], np.float32)
        bias = np.asarray(data["bias"], np.float32)
        kernel = int(data.get("kernel", 1))
        hidden = data.get("hidden_weight")
        hidden_weight = None if hidden is None else np.asarray(hidden, np.float32)
        hidden_bias = None if hidden is None else np.asarray(data.get("hidden_bias"), np.float32)
        features = weight.shape[0] if hidden_weight is None else hidden_weight.shape[0]
        glob = data.get("global_weight")
        global_weight = None if glob is None else np.asarray(glob, np.float32)
        if global_weight is not None and (hidden_weight is None or global_weight.shape != (
                2 * (features // (kernel * kernel)), hidden_weight.shape[1])):
            raise ValueError("approx decoder's global_weight must be (2 C, H) after a (k*k*C, H) hidden_weight; got "
                             f"{global_weight.shape} with hidden "
                             f"{None if hidden_weight is None else hidden_weight.shape}")
        if kernel not in (1, 3) or weight.ndim != 2 or weight.shape[1] != 3 or bias.shape != (3,) \
                or features % (kernel * kernel) or (hidden_weight is not None and (
                    hidden_weight.ndim != 2 or hidden_bias.shape != (hidden_weight.shape[1],)
                    or weight.shape[0] != hidden_weight.shape[1])):
            raise ValueError(f"approx decoder must be a (k*k*C, 3) weight, a (3,) bias and kernel 1 or 3, after "
                             f"an optional (k*k*C, H) hidden_weight and (H,) hidden_bias; got {weight.shape}, "
                             f"{bias.shape}, kernel {kernel}"
                             + ("" if hidden_weight is None else f", hidden {hidden_weight.shape}, {hidden_bias.shape}"))
        return cls(weight, bias, kernel, hidden_weight, hidden_bias, global_weight)

    @classmethod
    def fit(cls, vae: Any, images: Any = None, *, kernel: int = 1, count: int = 32, blocks: int = 4,
            seed: int = 0) -> "ApproxDecoder":
        """Least-squares fit of latent -> RGB on images run through `vae`'s encoder.

        images: (N, 3, H, W) in [0, 1] from the VAE's own world (best), or None for synthetic
        colour blocks, which suit VAEs trained on natural images (SD, SDXL, SD3, Flux).
        """
        if kernel not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {kernel!r}")
        factor = upscale(vae) or 8
        if images is None:
            side = blocks * factor * 2  # each colour block spans 2 x 2 latent pixels
            rng = np.random.default_rng(seed)
            colors = rng.random((count, 3, blocks, blocks), dtype=np.float32)
            colors[: count // 4] = rng.integers(0, 2, (count // 4, 3, blocks, blocks)).astype(np.float32)  # pure hues
            images = torch.from_numpy(colors).repeat_interleave(side // blocks, 2).repeat_interleave(side // blocks, 3)
        pixels = torch.as_tensor(images, dtype=torch.float32)
        param = next(vae.parameters())
        with torch.no_grad():
            encoded = vae.encode(pixels.to(param.device, param.dtype) * 2 - 1)
            # AutoencoderKL: a distribution (its mean); AutoencoderDC: the latent itself
            dist = getattr(encoded, "latent_dist", None)
            latents = (dist.mean if dist is not None else encoded.latent).float().cpu()
        target = torch.nn.functional.avg_pool2d(pixels, factor)  # RGB at latent resolution
        return cls._solve(to_pipeline_space(vae, latents), target, kernel)

    @classmethod
    def fit_to_decoder(cls, vae: Any, latents: torch.Tensor, *, kernel: int = 1) -> "ApproxDecoder":
        """Least-squares fit to what the VAE's decoder shows for (N, C, h, w) pipeline-space latents.

        Better than fitting through the encoder when a model's latents stray off the encoder's
        manifold (a small VAE whose decoder is far from linear).
        """
        if kernel not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {kernel!r}")
        return cls._solve(latents.float().cpu(), _decoded_at_latent_size(vae, latents), kernel)

    @classmethod
    def fit_hidden(cls, vae: Any, latents: torch.Tensor, *, kernel: int = 3, hidden: int = 16, steps: int = 1500,
                   seed: int = 0, global_context: bool = False) -> "ApproxDecoder":
        """Like fit_to_decoder, with one ReLU layer of `hidden` units, fitted by Adam on the L1 error.

        For a small VAE whose decoder is far from linear: on the shapes model's held-out runs the
        mean error drops from 28 (the linear 3 x 3 fit) to 14 (of 255) with 16 units and 13 with 64
        (nbdiffuse/shapes/approx.py), at ~0.1 ms per frame. global_context: the hidden layer also
        sees global_features (global_weight): 13.9 -> 9.6 there.
        """
        if kernel not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {kernel!r}")
        target = _decoded_at_latent_size(vae, latents)
        latents = latents.float().cpu()
        generator = torch.Generator().manual_seed(seed)
        channels = latents.shape[1]
        first = torch.nn.Conv2d(channels, hidden, kernel)
        last = torch.nn.Conv2d(hidden, 3, 1)
        with torch.no_grad():
            for layer in (first, last):
                bound = 1 / math.sqrt(layer.weight[0].numel())
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
        padded = torch.nn.functional.pad(latents, (1, 1, 1, 1), mode="replicate") if kernel == 3 else latents
        context = global_features(latents)
        glob = torch.nn.Parameter(torch.zeros(2 * channels, hidden)) if global_context else None
        params = [*first.parameters(), *last.parameters()] + ([glob] if glob is not None else [])
        optimizer = torch.optim.Adam(params, lr=1e-2)
        for step in range(steps):
            if step == steps * 2 // 3:
                for group in optimizer.param_groups:
                    group["lr"] = 2e-3
            batch = torch.randint(0, len(latents), (min(128, len(latents)),), generator=generator)
            pre = first(padded[batch])
            if glob is not None:
                pre = pre + (context[batch] @ glob)[:, :, None, None]
            loss = (last(torch.relu(pre)) - target[batch]).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():  # back to the (dy, dx, channel) feature order of _features
            w1 = first.weight.permute(2, 3, 1, 0).reshape(kernel * kernel * channels, hidden).numpy().copy()
            w2 = last.weight[:, :, 0, 0].T.numpy().copy()
            return cls(w2, last.bias.numpy().copy(), kernel, w1, first.bias.numpy().copy(),
                       None if glob is None else glob.detach().numpy().copy())

    @classmethod
    def _solve(cls, latents: torch.Tensor, target: torch.Tensor, kernel: int) -> "ApproxDecoder":
        z = np.concatenate([_features(x, kernel).reshape(-1, x.shape[1] * x.shape[2]).T for x in latents.numpy()])
        y = target.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
        design = np.concatenate([z, np.ones((len(z), 1), np.float32)], 1)
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        return cls(solution[:-1].astype(np.float32), solution[-1].astype(np.float32), kernel)


def global_features(latents: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, 2 C) float32: each latent's per-channel mean and standard deviation (ddof 1)."""
    z = latents.float().flatten(2)
    if z.shape[2] == 1:
        return torch.cat([z[:, :, 0], torch.zeros_like(z[:, :, 0])], 1)
    std, mean = torch.std_mean(z, 2)
    return torch.cat([mean, std], 1)


def _decoded_at_latent_size(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """What the VAE's decoder shows for (N, C, h, w) pipeline-space latents, RGB in [0, 1] averaged
    down to the latents' resolution: the target of the fits to the decoder."""
    param = next(vae.parameters())
    with torch.no_grad():
        decoded = vae.decode(from_pipeline_space(vae, latents.to(param.device, torch.float32)).to(param.dtype),
                             return_dict=False)[0].float().cpu()
    return torch.nn.functional.adaptive_avg_pool2d((decoded.clamp(-1, 1) + 1) / 2, tuple(latents.shape[-2:]))


def _features(z: np.ndarray, kernel: int) -> np.ndarray:
    """(C, H, W) -> (kernel * kernel * C, H, W): the latent pixel, or its 3 x 3 neighbourhood."""
    if kernel == 1:
        return z
    padded = np.pad(z, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = z.shape[1:]
    return np.concatenate([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def to_pipeline_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the scaled latents a pipeline denoises."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def from_pipeline_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return latents / vae.config.scaling_factor + shift


_approx_cache: "weakref.WeakKeyDictionary[Any, ApproxDecoder]" = weakref.WeakKeyDictionary()
_approx_lock = threading.Lock()


def approx_decoder_for(vae: Any) -> ApproxDecoder:
    """The approx decoder of `vae`: one shipped with the model, else fitted on first use and cached."""
    shipped = shipped_approx(vae)
    if shipped is not None:
        return shipped
    with _approx_lock:
        decoder = _approx_cache.get(vae)
        if decoder is None:
            decoder = ApproxDecoder.fit(vae) if _encodes(vae) else ApproxDecoder.fit_to_decoder(vae, _probe_latents(vae))
            _approx_cache[vae] = decoder
        return decoder


def _encodes(vae: Any) -> bool:
    """Whether `vae` has an encoder that approx fits can use (AutoencoderKL, AutoencoderDC; not a
    pipeline's own decoder under another name, core/pipe_decoder.py)."""
    return callable(getattr(vae, "encode", None)) and upscale(vae) is not None


def _probe_latents(vae: Any, count: int = 16, side: int = 8) -> torch.Tensor:
    """Seeded standard-normal latents in the pipeline's space, to fit an approx decoder to a decoder
    that has no encoder: what its decoder draws of them is the fit's target."""
    channels = getattr(vae.config, "latent_channels", None) or getattr(vae, "latent_channels", None) or 4
    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, int(channels), side, side, generator=generator)


def to_pil(images: torch.Tensor) -> Image.Image:
    """A (1, 3, H, W) or (3, H, W) tensor in [-1, 1] -> PIL image."""
    if images.ndim == 4:
        images = images[0]
    array = ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


_fp32_copies: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def needs_upcast(vae: Any) -> bool:
    """SDXL's VAE overflows in fp16 (config force_upcast): it must run in fp32."""
    return next(vae.parameters()).dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


def fp32_copy(vae: Any) -> Any:
    """An fp32 copy of `vae`, made once: never convert the shared model, another thread may be using it."""
    with _approx_lock:
        copy = _fp32_copies.get(vae)
        if copy is None:
            copy = _fp32_copies[vae] = deepcopy(vae).float()
        return copy


SIDE_STREAM = True  # False: decode on the caller's current stream (benchmarks/gpu_overhead.py compares)
_side_streams: dict[int, Any] = {}


def decode_stream(device: torch.device, latents: torch.Tensor | None = None) -> Any:
    """Where a full decode runs: on CUDA a stream of its own, so that decoding a scrubbed or paused
    frame runs beside a denoising run's steps instead of queueing behind them on the default
    stream (and the run's steps do not queue behind the decode). Elsewhere: nothing to do."""
    if device.type != "cuda" or not SIDE_STREAM:
        return contextlib.nullcontext()
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _approx_lock:
        stream = _side_streams.get(index)
        if stream is None:
            stream = _side_streams[index] = torch.cuda.Stream(device=index)
    if latents is not None and latents.device.type == "cuda":
        stream.wait_stream(torch.cuda.current_stream(index))  # latents made on the caller's stream
    return torch.cuda.stream(stream)


def full_decode(vae: Any, latents: torch.Tensor) -> Image.Image:
    """Decode (C, H, W) pipeline-space latents with the VAE (or a tiny decoder: AutoencoderTiny, TinyDecoder)."""
    param = next(vae.parameters())
    with decode_stream(param.device, latents):
        # the copy to the host (to_pil) waits for this stream only
        return to_pil(_decode(vae, latents.unsqueeze(0) if latents.ndim == 3 else latents))


DECODE_BATCH_PIXELS = 2 ** 20  # output pixels per VAE call in full_decode_many: 8 shapes frames, 4 of SD 1.5, 1 of SDXL
DECODE_BATCH_MAX = 8  # more frames per call than this saved nothing on the shapes model's 64 x 64 (CPU)


def full_decode_many(vae: Any, latents: Sequence[torch.Tensor]) -> Iterator[Image.Image]:
    """full_decode of several (C, H, W) latents of one shape, in order, a few per VAE call, each call
    made when its pictures are asked for (so a caller that encodes them as they come holds few).

    The batch is bounded by output pixels, so a 1024 x 1024 frame still goes alone: the VAE's
    activations at that size take gigabytes. Batched and single decodes agree to float rounding (on the
    shapes model 5 of 245,760 values of 20 frames came out 1 of 255 apart).
    """
    shapes = {tuple(z.shape[-3:]) for z in latents}
    if len(shapes) > 1:
        raise ValueError(f"latents must share one shape to be decoded together, got {sorted(shapes)}")
    items = [z[0] if z.ndim == 4 else z for z in latents]
    if not items:
        return
    device = next(vae.parameters()).device
    up = upscale(vae)  # where it is known, the output size tells how many fit in a call; else the first frame does
    per_call = 1 if up is None else max(1, min(DECODE_BATCH_MAX, DECODE_BATCH_PIXELS // (
        items[0].shape[-1] * items[0].shape[-2] * up * up)))
    start = 0
    while start < len(items):
        batch = torch.stack(items[start:start + per_call])
        with decode_stream(device, batch):
            pictures = [to_pil(image) for image in _decode(vae, batch)]
        yield from pictures
        start += len(batch)
        per_call = max(1, min(DECODE_BATCH_MAX, DECODE_BATCH_PIXELS // (pictures[0].width * pictures[0].height)))


def upscale(vae: Any) -> int | None:
    """How many output pixels a latent pixel becomes along each side, where the decoder's config says."""
    known = getattr(vae, "upscale", None)
    if isinstance(known, int):
        return known  # TinyDecoder
    # Set in __init__ (AutoencoderDC) or a config key (HunyuanImage's VAE): read each where it lives,
    # not through diffusers' deprecated attribute look-up of config keys (a FutureWarning).
    config = getattr(vae, "config", None)
    read = config.get if hasattr(config, "get") else (lambda key: getattr(config, key, None))
    ratio = getattr(vae, "__dict__", {}).get("spatial_compression_ratio", read("spatial_compression_ratio"))
    if isinstance(ratio, int):
        return ratio
    blocks = read("block_out_channels")
    return 2 ** (len(blocks) - 1) if blocks else None  # AutoencoderKL, AutoencoderTiny


def _decode(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) pipeline-space latents -> (N, 3, H, W) in [-1, 1], on the VAE's device."""
    param = next(vae.parameters())
    z = from_pipeline_space(vae, z.to(param.device, torch.float32))
    with torch.no_grad():
        if needs_upcast(vae):
            return fp32_copy(vae).decode(z, return_dict=False)[0]
        return vae.decode(z.to(param.dtype), return_dict=False)[0]


def same_latents(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two latents differ only by the rounding of their dtype: one decode shows both.

    At a run's last step x_t and the x0 prediction agree to rounding for samplers that end at
    sigma 0 (Euler, DPM++, DDIM, UniPC...), but not bit for bit: ~1e-7 apart in fp32 (measured on
    the shapes model, 20 steps), a few fp16 units apart on a GPU, where x0 is worked out in fp16.
    LMS and DEIS end ~0.1 apart and are decoded separately. A second decode and PNG of the final
    frame cost 70 ms of a 1.2 s SD 1.5 run on an H100 (benchmarks/gpu_overhead.py).
    """
    if a.shape != b.shape:
        return False
    eps = max(torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0 for t in (a, b))
    tolerance = max(1e-5, 4 * eps)  # fp32: 1e-5; fp16: 3.9e-3; bf16: 3.1e-2 (relative to the largest value)
    scale = 1.0 + float(a.abs().max())
    return float((a.float() - b.float()).abs().max()) <= tolerance * scale

