"""The pictures a saved run carries: every step's frames as the model's own VAE draws them.

A run opened without its model (nbd.Trajectory.load, Explorer.from_files) has otherwise only the
approx decoder, a small fitted latent -> RGB map at latent resolution: blocky and off in colour. A
teacher saves SDXL runs on a GPU; learners on laptops see SDXL's own pictures. In a `.nbd` file each
frame is a uint8 tensor `frames.<step>.<view>` holding WebP, JPEG or PNG bytes at the run's output
size (core/image_codec.py), checked at load and decoded only when shown.
"""
from __future__ import annotations

import itertools
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from .decode import full_decode_many, same_latents
from .image_codec import check_picture, encode_picture
from .pipe_decoder import decoder_of
from .views import VIEWS
from .views import resize as _resize

if TYPE_CHECKING:  # the trajectory module saves through this one (core/trajfile.py)
    from .trajectory import Trajectory

# Pillow's WebP encoder lets go of the GIL (measured: the main thread kept 93% of its speed during
# one), so frames encode side by side and beside the VAE's decoding of the next ones: a 1024 x 1024
# frame takes 150-500 ms to encode on a busy 2-core CPU, as long as the SDXL VAE takes to decode it.
ENCODE_THREADS = min(4, os.cpu_count() or 1)
_NAME = re.compile(r"frames\.(0|[1-9][0-9]{0,8})\.(x0|xt)")


def views_saved(traj: Trajectory) -> tuple[str, ...]:
    """The views a file of this run holds frames of: both, x_t alone for runs that record only x_t
    (core/generic.py), none for runs whose latents have no picture form (capabilities' previews)."""
    if not traj.capabilities["previews"]:
        return ()
    return VIEWS if traj.has_x0 else ("xt",)


def frames_to_save(traj: Trajectory) -> dict[tuple[int, str], bytes]:
    """{(step, view): image bytes} for every step of views_saved(traj).

    Frames the run carries already (a loaded run) are kept as they are; the others are taken from
    the run's decode cache or decoded by the attached pipeline's VAE (decode.full_decode_many:
    several per call), and encoded by image_codec.encode_picture. Without a pipeline only the
    carried frames remain.
    Where a step's x_t and x0 agree to rounding (the last step of most samplers) one picture serves
    both: the same bytes object under both keys, written once.
    """
    views = views_saved(traj)
    frames = {key: data for key, data in traj.saved_frames.items() if key[1] in views and key[0] < len(traj)}
    if traj.pipe is None or not views:
        return frames
    size = (int(traj.params["width"]), int(traj.params["height"]))
    cached: list[tuple[tuple[int, str], Any]] = []
    missing: list[tuple[tuple[int, str], torch.Tensor]] = []
    twins: dict[tuple[int, str], tuple[int, str]] = {}
    for k in range(len(traj)):
        for view in views:
            if (k, view) in frames:
                continue
            latents = traj.latents_for(k, view)
            if view == "xt" and "x0" in views and same_latents(traj.latents_for(k, "x0"), latents):
                twins[(k, "xt")] = (k, "x0")
                continue
            picture = traj._cached_full(k, view)
            if picture is not None:
                cached.append(((k, view), picture))
            else:
                missing.append(((k, view), latents))
    decoded = zip([key for key, _ in missing], full_decode_many(decoder_of(traj.pipe), [latents for _, latents in missing]))
    with ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="nbd-save-frames") as pool:
        pending: deque = deque()
        for key, picture in itertools.chain(cached, decoded):  # decoded as the loop asks for them
            pending.append((key, pool.submit(encode_picture, _resize(picture, "output", size))))
            while len(pending) > 2 * ENCODE_THREADS:  # a few decoded pictures wait, never the whole run's
                done, future = pending.popleft()
                frames[done] = future.result()
        for done, future in pending:
            frames[done] = future.result()
    for key, twin in twins.items():
        frames[key] = frames[twin]
    return frames


def pack(frames: dict[tuple[int, str], bytes]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Frames as safetensors tensors (uint8, one per stored picture) and the JSON that goes with them."""
    tensors, xt_is_x0 = {}, []
    for (k, view), data in sorted(frames.items()):
        if view == "xt" and frames.get((k, "x0")) is data:
            xt_is_x0.append(k)
            continue
        tensors[f"frames.{k}.{view}"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return tensors, {"xt_is_x0": xt_is_x0}


def unpack(tensors: dict[str, torch.Tensor], meta: Any, steps: int, size: tuple[int, int],
           views: tuple[str, ...]) -> dict[tuple[int, str], bytes]:
    """The frames of a loaded file, checked: names, views the run has, steps in range, image bytes of
    an allowed format that declare the run's size (nothing is decoded here). ValueError naming the field."""
    frames: dict[tuple[int, str], bytes] = {}
    for name in sorted(n for n in tensors if n.startswith("frames.")):
        match = _NAME.fullmatch(name)
        if match is None or int(match.group(1)) >= steps:
            raise ValueError(f"tensor {name!r} is not a frame of this run: frame tensors are named "
                             f"frames.<step>.<view>, step 0..{steps - 1}, view 'x0' or 'xt'")
        k, view = int(match.group(1)), match.group(2)
        if view not in views:
            raise ValueError(f"tensor {name!r} is a frame of view {view!r}, which this run does not have "
                             f"(its views: {', '.join(map(repr, views)) or 'none'})")
        tensor = tensors[name]
        if tensor.dtype != torch.uint8 or tensor.ndim != 1:
            raise ValueError(f"tensor {name!r} must hold image bytes (1-D uint8), got {tensor.dtype} of shape "
                             f"{tuple(tensor.shape)}")
        data = tensor.numpy().tobytes()
        try:
            check_picture(data, size)
        except ValueError as exc:
            raise ValueError(f"tensor {name!r} {exc}") from None
        frames[(k, view)] = data
    meta = {} if meta is None else meta
    shared = meta.get("xt_is_x0", []) if isinstance(meta, dict) else None
    if not isinstance(shared, list):
        raise ValueError(f"meta 'frames' must be an object with a list 'xt_is_x0', got {meta!r:.80}")
    for k in shared:
        if isinstance(k, bool) or not isinstance(k, int) or (k, "x0") not in frames or (k, "xt") in frames \
                or "xt" not in views:
            raise ValueError(f"meta frames.xt_is_x0 lists {k!r}, which is not a step with an x0 frame and no "
                             "x_t frame of its own")
        frames[(k, "xt")] = frames[(k, "x0")]
    return frames
