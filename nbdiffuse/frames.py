"""Frames for live views: step latents -> small encoded images, and the pacing that sends them.

No widget imports here. A Pacer only needs a `send(content, buffers)` function, so the same
code serves the Explorer, a headless frontend in tests and the benchmark.

Why pacing: the Jupyter server forwards at most 1000 iopub messages/s and silently drops the
rest, after which widget state stays out of sync for good. So a live stream sends only the
newest frame and lets the browser acknowledge each one, with at most two unacknowledged
(jupyter_rfb's pattern). No step is lost: the scrubber's state gets every step's frame at
pause and at the end; only the live *sending* skips to the newest.
"""
from __future__ import annotations

import io
import math
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, features

from .core.decode import same_latents

VIEWS = ("x0", "xt")
LIVE_QUALITY = 80
LIVE_MAX_BYTES = 60_000  # per frame: at MIN_INTERVAL, two views stay under ~4 MB/s
MAX_IN_FLIGHT = 2
ACK_TIMEOUT = 0.5  # s; an unacknowledged frame older than this counts as lost (no view, hidden tab, busy kernel)
MIN_INTERVAL = 1 / 30  # s between live frames
RAW_MAGIC = b"NBDRGB"  # then width and height (uint16 LE), then the RGB bytes: see encode_frame
RAW_MAX_PIXELS = 32 * 32
RAW_TYPE = "image/x-nbdiffuse-rgb"  # mime_type's name for raw frames: no browser reads them as an <img>
LOSSLESS_TYPE = "image/webp" if features.check("webp") else "image/png"  # encode_lossless's frames
WEBP_MAX_SIDE = 16383  # px: larger pictures go as PNG

Send = Callable[[dict, list], None]


# --- encoding --------------------------------------------------------------------------
def encode_live(rgb: np.ndarray, quality: int = LIVE_QUALITY, max_bytes: int = LIVE_MAX_BYTES) -> bytes:
    """An HxWx3 uint8 array as lossy JPEG of at most `max_bytes` (lower quality, then half size, until it fits).

    JPEG rather than WebP: every step is encoded, and for latent-resolution previews JPEG is
    4-5x faster (0.12 vs 0.56 ms for a noisy 64x64 frame here) for up to twice the bytes (7 vs
    3 KB). No chroma subsampling (4:4:4): each latent pixel keeps its own colour when the browser
    upscales it.
    """
    image = _image(rgb)
    while True:
        for q in (quality, 50, 30):
            data = _save(image, "JPEG", quality=q, subsampling=0)
            if len(data) <= max_bytes:
                return data
        if min(image.size) <= 16:
            return data  # a 16 px image over budget means a budget too small to honour; send it anyway
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.BILINEAR)


def encode_frame(rgb: np.ndarray, raw: bool = True) -> bytes:
    """A step's frame for the scrubber and the live view: raw RGB up to 32 x 32 pixels, else encode_live.
    raw=False, for a picture shown in an <img> (run-tree thumbnails): small ones go lossless
    (encode_lossless: 750-774 against JPEG's 766 B at 16 x 16) instead of raw.

    At a small model's latent size raw pixels are no larger than a JPEG (768 B for 16 x 16 against
    784 B on average over a run of the shapes model) and lossless, where JPEG was off by 7.5 of
    255 on average and by 49 at the worst pixel of the median frame: coloured specks that nearest-
    neighbour upscaling shows as whole cells. They also cost nothing to make (the JPEG took 77 us).
    The browser reads the 10-byte header (RAW_MAGIC, width, height) in widgets/frame_decode.js.
    """
    array = _as_rgb(rgb)
    height, width = array.shape[:2]
    if height * width > RAW_MAX_PIXELS:
        return encode_live(array)
    if not raw:
        return encode_lossless(array)
    return RAW_MAGIC + width.to_bytes(2, "little") + height.to_bytes(2, "little") + array.tobytes()


def decode_frame(data: bytes) -> np.ndarray:
    """Any frame the kernel sends (raw, JPEG, PNG or WebP) as an HxWx3 uint8 array."""
    if mime_type(data) != RAW_TYPE:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    header = len(RAW_MAGIC)
    width, height = int.from_bytes(data[header:header + 2], "little"), int.from_bytes(data[header + 2:header + 4], "little")
    pixels = data[header + 4:]
    if len(pixels) != width * height * 3:
        raise ValueError(f"raw frame of {len(data)} bytes does not hold {width} x {height} RGB pixels")
    return np.frombuffer(pixels, np.uint8).reshape(height, width, 3).copy()


def encode_lossless(picture: Image.Image | np.ndarray) -> bytes:
    """The final, paused or scrubbed frame at full-VAE quality: lossless WebP (PNG where Pillow lacks WebP).

    It runs once per shown frame, at the end of every run and on the path of every scrub, so speed
    counts. WebP's lossless mode at its fastest method against PNG at compress level 1, measured
    here: 512x512 photos 16-22 vs 26-38 ms, 1024x1024 photos 92-95 vs 120-140 ms, 512x512 noise
    (what random-weight benchmark models draw) 11 vs 35 ms; 13-20% fewer bytes in each case; the
    shapes model's 64x64 pictures 0.30 vs 0.34 ms. Every browser JupyterLab supports decodes it.
    """
    image = (picture if isinstance(picture, Image.Image) else _image(picture)).convert("RGB")
    if LOSSLESS_TYPE == "image/webp" and max(image.size) <= WEBP_MAX_SIDE:
        return _save(image, "WEBP", lossless=True, method=0, quality=0)
    return _save(image, "PNG", compress_level=1)


def mime_type(data: bytes) -> str:
    if data[:len(RAW_MAGIC)] == RAW_MAGIC and len(data) >= len(RAW_MAGIC) + 4:
        return RAW_TYPE
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"\xff\xd8":
        return "image/jpeg"
    raise ValueError(f"frame data must be PNG, WebP, JPEG or raw frame bytes; got a blob starting {bytes(data[:12])!r}")


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"frame must be an HxWx3 uint8 array, got shape {array.shape} dtype {array.dtype}")
    return np.ascontiguousarray(array)


def _image(rgb: np.ndarray) -> Image.Image:
    # frombytes, not fromarray: an image that owns its pixels encodes faster (a 16x16 JPEG
    # in 44 instead of 68 us here), and live frames are encoded twice a step.
    array = _as_rgb(rgb)
    return Image.frombytes("RGB", (array.shape[1], array.shape[0]), array.tobytes())


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def has_view(traj: Any, view: str) -> bool:
    """Whether a trajectory can show `view`: runs that record x_t only (core/generic.py) have no x0."""
    return view != "x0" or getattr(traj, "has_x0", True)


def step_frames(traj: Any, k: int, views: Sequence[str] = VIEWS) -> list[bytes]:
    """Step k of a trajectory as live frames (approx decoder, latent resolution; encode_frame), one per
    view (b"" for a view the run does not have: x0 of an x_t-only run)."""
    shown = [view for view in views if has_view(traj, view)]
    pictures = traj.approx_decoder().rgb_many([traj.latents_for(k, view) for view in shown]) if shown else []
    encoded = dict(zip(shown, map(encode_frame, pictures)))
    return [encoded.get(view, b"") for view in views]


def live_frames(traj: Any, k: int, views: Sequence[str] = VIEWS, decoder: str = "approx") -> list[bytes]:
    """Step k as the frames a running view is sent: step_frames (approx, latent resolution), or with
    decoder="tiny" the pipeline's tiny autoencoder (nbd.set_tiny_decoder) at the output size, as
    JPEG within the live budget. Only frames that are sent are decoded: on a GPU the decode runs on
    the decoders' side stream (core/decode.py), beside the run's steps."""
    from .core.decode import full_decode
    from .core.loading import tiny_decoder

    tiny = tiny_decoder(traj.pipe) if decoder == "tiny" and traj.pipe is not None else None
    if tiny is None:  # approx asked for, or the run's model has no tiny autoencoder (any more)
        return step_frames(traj, k, views)
    return [encode_live(np.asarray(full_decode(tiny, traj.latents_for(k, view)))) if has_view(traj, view) else b""
            for view in views]


def full_frames(traj: Any, k: int, views: Sequence[str] = VIEWS) -> list[bytes]:
    """Step k decoded with the full VAE at the run's output size, lossless (encode_lossless), one per view
    (b"" as step_frames)."""
    done: list[tuple[Any, bytes]] = []
    for view in views:
        if not has_view(traj, view):
            done.append((None, b""))
            continue
        latents = traj.latents_for(k, view)
        # At the last step x_t is the clean latent for most samplers: one VAE decode serves both views.
        data = next((known for seen, known in done if seen is not None and same_latents(seen, latents)), None)
        if data is None:
            data = encode_lossless(traj.image(k, view, decoder="full"))
        done.append((latents, data))
    return [data for _, data in done]


# --- pacing ----------------------------------------------------------------------------
Message = Callable[[], "tuple[dict, list]"]


class Pacer:
    """Send only the newest message, at most `max_in_flight` awaiting the browser's ack.

    `offer(make)` replaces any message still waiting (newest wins); `make()` builds the message
    only when it is sent, so frames that are never sent are never encoded. `ack(seq)` frees a
    slot and sends what waits. Each message gets a `seq` that the browser echoes back; acks for
    unknown seqs (a second view of one widget, a late ack) are ignored. `min_interval` caps the
    rate (a display shows no more than ~60 frames/s, and each message costs the kernel time).
    """

    def __init__(self, send: Send, max_in_flight: int = MAX_IN_FLIGHT, ack_timeout: float = ACK_TIMEOUT,
                 min_interval: float = MIN_INTERVAL, clock: Callable[[], float] = time.monotonic):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if not ack_timeout > 0:
            raise ValueError(f"ack_timeout must be > 0 seconds, got {ack_timeout}")
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self._send, self.max_in_flight, self.ack_timeout = send, max_in_flight, ack_timeout
        self.min_interval, self._clock = min_interval, clock
        self._lock = threading.Lock()
        self._pending: Message | None = None
        self._in_flight: dict[int, float] = {}
        self._seq = 0
        self._last_sent = -math.inf
        self._closed = False
        self.sent = self.replaced = self.expired = self.bytes_sent = 0

    def offer(self, make: Message) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pending is not None:
                self.replaced += 1
            self._pending = make
            self._pump()

    def ack(self, seq: Any) -> None:
        with self._lock:
            if self._in_flight.pop(seq, None) is not None:
                self._pump()

    def pump(self) -> None:
        """Send what waits if a slot is free (or has timed out)."""
        with self._lock:
            self._pump()

    def close(self) -> None:
        """Drop what waits and send nothing more (the final state goes another way)."""
        with self._lock:
            self._closed = True
            self._pending = None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def waiting(self) -> bool:
        with self._lock:
            return self._pending is not None

    def _pump(self) -> None:
        if self._pending is None or self._closed:
            return
        now = self._clock()
        for seq, sent_at in list(self._in_flight.items()):
            if now - sent_at >= self.ack_timeout:
                del self._in_flight[seq]
                self.expired += 1
        if len(self._in_flight) >= self.max_in_flight or now - self._last_sent < self.min_interval:
            return
        make, self._pending = self._pending, None
        content, buffers = make()
        self._seq += 1
        self._in_flight[self._seq] = now
        self._last_sent = now
        self.sent += 1
        self.bytes_sent += sum(len(b) for b in buffers)
        # Sent under the lock so that close() means "nothing more goes out" without a race.
        self._send(dict(content, seq=self._seq), buffers)


class FrameStream:
    """The live frames of one running trajectory: offered to a Pacer as steps arrive, kept for the state.

    `push(k)` is all the denoising loop does per step; a step's frames are encoded only when the
    Pacer sends them or when `snapshot()` needs them (pause, end of run). No thread of its own:
    on a CPU, a second Python thread encoding beside the model slows every step through the GIL
    (measured: +7..16% step time for the tiny test pipeline), more than the encoding itself costs.
    With decoder="tiny" the frames sent are decoded by the pipeline's tiny autoencoder at the
    output size (live_frames); the frames kept for the scrubber stay approx ones, small enough
    for the widget state.
    """

    def __init__(self, traj: Any, pacer: Pacer, message: Callable[[int], dict], views: Sequence[str] = VIEWS,
                 decoder: str = "approx"):
        self.traj, self.pacer, self._message, self.views = traj, pacer, message, tuple(views)
        self.decoder = decoder  # of the frames sent live; the kept frames (snapshot) are approx ones
        self._frames: dict[int, list[bytes]] = {}
        self._lock = threading.Lock()

    def push(self, k: int) -> None:
        if self.decoder == "approx":
            self.pacer.offer(lambda: (self._message(k), self.frames(k)))
        else:
            self.pacer.offer(lambda: (self._message(k), live_frames(self.traj, k, self.views, self.decoder)))

    def frames(self, k: int) -> list[bytes]:
        """Step k's encoded frames, one per view (encoded once, then kept)."""
        with self._lock:
            found = self._frames.get(k)
        if found is None:
            found = step_frames(self.traj, k, self.views)
            with self._lock:
                self._frames[k] = found
        return found

    def snapshot(self, upto: int | None = None) -> list[list[bytes]]:
        """Every frame of steps 0..upto-1 (default: all recorded), one list per view."""
        n = len(self.traj) if upto is None else upto
        per_step = [self.frames(k) for k in range(n)]
        return [[frames[v] for frames in per_step] for v in range(len(self.views))]
