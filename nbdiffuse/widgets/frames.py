"""Frames for live views: step latents -> small encoded images, which decoder draws them, and the
stream that makes a running trajectory's frames and offers them to a Pacer (pacer.py).

No widget imports here. No step is lost: the scrubber's state gets every step's frame at pause
and at the end; only the live *sending* skips to the newest.
"""
from __future__ import annotations

import io
import math
import threading
import time
import weakref
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, features

from ..core.decode import full_decode_many, same_latents
from ..core.image_codec import save_image
from ..core.pipe_attrs import tiny_decoder
from ..core.pipe_decoder import decoder_of
from ..core.views import VIEWS
from .pacer import Pacer

LIVE_QUALITY = 80
TINY_QUALITY = 90  # encode_tiny
LIVE_MAX_BYTES = 60_000  # per frame: at pacer.MIN_INTERVAL, two views stay under ~1.5 MB/s
# Raw frames (older saved notebooks and files hold them; nothing writes them now): RAW_MAGIC, then
# width and height (uint16 LE), then the RGB bytes. widgets/frame_decode.js reads them too.
RAW_MAGIC = b"NBDRGB"
RAW_TYPE = "image/x-nbdiffuse-rgb"  # mime_type's name for raw frames: no browser reads them as an <img>
LOSSLESS_MAX_PIXELS = 64 * 64  # frames up to this size go lossless (encode_frame)
LOSSLESS_TYPE = "image/webp" if features.check("webp") else "image/png"  # encode_lossless's frames
WEBP_MAX_SIDE = 16383  # px: larger pictures go as PNG


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
            data = save_image(image, "JPEG", quality=q, subsampling=0)
            if len(data) <= max_bytes:
                return data
        if min(image.size) <= 16:
            return data  # a 16 px image over budget means a budget too small to honour; send it anyway
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.BILINEAR)


def encode_frame(rgb: np.ndarray) -> bytes:
    """A step's frame for the scrubber, the live view and the run tree: standard image bytes an <img>,
    a saved notebook and an HTML export can all read. Up to LOSSLESS_MAX_PIXELS (the embedded
    model's 64 x 64 pictures, a small model's latent-size approx frames) lossless WebP: exact, and no
    larger than JPEG there (a 64 x 64 shapes picture 550 B against 1242 B, 0.18 against 0.07 ms);
    larger frames JPEG within the live budget (encode_live).
    """
    array = _as_rgb(rgb)
    if array.shape[0] * array.shape[1] > LOSSLESS_MAX_PIXELS:
        return encode_live(array)
    return encode_lossless(array)


def encode_tiny(rgb: np.ndarray) -> bytes:
    """A tiny decoder's frame: JPEG at quality TINY_QUALITY, colours at full resolution (4:4:4).

    Lossless would keep the decoder's own error exactly (3.6 of 255 from the full VAE on the embedded
    model's x0 frames) at three times the bytes and four to eight times the time: over 80 held-out
    frames of its runs, lossless WebP 3.6-4.1 KB in 0.45-0.75 ms, this 1.3 KB in 0.07-0.16 ms, and the
    frames' distance from the full VAE's 3.71 of 255 instead of 3.62 (x_t frames 9.16 instead of 9.08).
    """
    return encode_live(rgb, quality=TINY_QUALITY)


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
        return save_image(image, "WEBP", lossless=True, method=0, quality=0)
    return save_image(image, "PNG", compress_level=1)


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


def has_view(traj: Any, view: str) -> bool:
    """Whether a trajectory can show `view`: runs that record x_t only (core/generic.py) have no x0, and
    runs whose latents have no picture form (packed, 5-D, or a pipeline without a decoder) show none."""
    if not getattr(traj, "capabilities", {}).get("previews", True):
        return False
    return view != "x0" or getattr(traj, "has_x0", True)


# --- which decoder draws a run's frames --------------------------------------------------
FRAME_DECODERS = ("saved", "tiny", "full", "approx")  # best first; see frame_decoder
FULL_FRAME_SHARE = 0.04  # a step's frames by the full VAE may cost this share of a step (the Explorer's budget)
_decode_costs: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def frame_decoder(traj: Any, preview: str = "auto") -> str:
    """The truest decoder for a run's per-step frames that keeps watching nearly free.

    "saved": the run carries its model's own VAE pictures (a loaded .nbd file). "tiny": the
    pipeline has a tiny decoder (the embedded model ships one; nbd.set_tiny_decoder). "full": the
    pipeline's VAE, where decoding a step's frames costs at most FULL_FRAME_SHARE of a step
    (measured once per VAE and latent size, against the run's first step). Else "approx", the
    latent-size linear map. preview "approx" asks for approx frames, "tiny" for the tiny decoder's.
    """
    if preview == "approx":
        return "approx"
    if preview == "auto" and getattr(traj, "has_saved_frames", False):
        return "saved"
    pipe = getattr(traj, "pipe", None)
    if pipe is None:
        return "approx"
    if tiny_decoder(pipe) is not None:
        return "tiny"
    if preview == "auto" and len(traj) and traj.capabilities.get("previews", True) and _full_is_cheap(traj):
        return "full"
    return "approx"


def _full_is_cheap(traj: Any) -> bool:
    vae, latents = decoder_of(traj.pipe), traj.latents_for(0, "xt")
    costs = _decode_costs.setdefault(vae, {})
    key = tuple(latents.shape)
    if key not in costs:
        list(full_decode_many(vae, [latents]))  # warm-up: first calls allocate
        start = time.perf_counter()
        list(full_decode_many(vae, [latents] * len(VIEWS)))
        costs[key] = time.perf_counter() - start
    return costs[key] <= FULL_FRAME_SHARE * traj[0].seconds  # a step of unknown length (0 s): not cheap


def step_frames(traj: Any, k: int, views: Sequence[str] = VIEWS, decoder: str = "approx") -> list[bytes]:
    """Step k of a trajectory as frames (encode_frame), one per view (b"" for a view the run does not
    have: x0 of an x_t-only run). decoder: one of FRAME_DECODERS (frame_decoder chooses)."""
    return steps_frames(traj, [k], views, decoder)[0]


def steps_frames(traj: Any, ks: Sequence[int], views: Sequence[str] = VIEWS, decoder: str = "approx") -> list[list[bytes]]:
    """step_frames for several steps, the decoder run on a few latents at a time (full_decode_many)."""
    shown = [view for view in views if has_view(traj, view)]
    wanted = [(k, view) for k in ks for view in shown]
    encoded: dict[tuple[int, str], bytes] = {}
    if decoder == "saved":
        encoded = {(k, view): traj.saved_frame(k, view) or b"" for k, view in wanted}
    else:
        latents = [traj.latents_for(k, view) for k, view in wanted]
        if decoder == "approx":
            pictures = traj.approx_decoder().rgb_many(latents) if latents else []
        else:
            vae = tiny_decoder(traj.pipe) if decoder == "tiny" else decoder_of(traj.pipe)
            pictures = [np.asarray(picture) for picture in full_decode_many(vae, latents)]
        encoded = dict(zip(wanted, map(encode_tiny if decoder == "tiny" else encode_frame, pictures)))
    return [[encoded.get((k, view), b"") for view in views] for k in ks]


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


class FrameStream:
    """The frames of one running trajectory: offered to a Pacer as steps arrive, kept for the state.

    `push(k)` is all the denoising loop does per step. A step's frames are decoded and encoded once,
    then kept: the frame the browser was sent live is the one the scrubber keeps, and `snapshot()`
    (pause, end of run) makes the steps never made, in batches. The decoder is chosen at the first
    frame (frame_decoder: the tiny decoder where the pipeline has one, else the full VAE where it is
    cheap next to a step, else approx) and kept for the run, so a run's frames are all of one kind;
    `decoder` says which (the browser marks approximate frames).

    worker=True makes the newest pushed step's frames in a thread of the stream's own, beside the
    model's next steps, at most once per Pacer interval (min_interval), and offers them live; the
    steps it passed over are left to `snapshot` (pause, end of run), which makes them in batches. A
    decoder's convolutions and the image codecs run outside the GIL, so where a core is free the
    live view costs the run little, and no more than its paced frames where none is (on a 2-core
    CPU, tiny decodes running beside the embedded model's steps slowed them by 5-9%).
    worker=False makes them in the pusher's thread when the Pacer sends them: for foreground runs
    (Colab shows no update sent from another thread).
    """

    SNAPSHOT_WAIT = 10.0  # s the snapshot waits for the worker's step in hand before making it itself

    def __init__(self, traj: Any, pacer: Pacer, message: Callable[[int], dict], views: Sequence[str] = VIEWS,
                 preview: str = "auto", worker: bool = False):
        self.traj, self.pacer, self._message, self.views = traj, pacer, message, tuple(views)
        self.preview = preview
        self._decoder: str | None = None
        self._decoder_lock = threading.Lock()
        self._frames: dict[int, list[bytes]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._newest: int | None = None  # the newest pushed step the worker has not taken yet
        self._next_at = -math.inf  # monotonic time from which the worker may make the next live frame
        self._busy = False  # the worker is making a step's frames
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="nbdiffuse-frames", daemon=True) if worker else None
        if self._thread is not None:
            self._thread.start()

    @property
    def decoder(self) -> str:
        """What draws this run's frames (one of FRAME_DECODERS), chosen at its first frame."""
        with self._decoder_lock:  # chosen once, whichever thread asks first (the choice may time a decode)
            if self._decoder is None:
                self._decoder = frame_decoder(self.traj, self.preview) if len(self.traj) else "approx"
            return self._decoder

    def push(self, k: int) -> None:
        if self._thread is None:
            self.pacer.offer(lambda: self._live_message(k, self.frames(k)))
            return
        with self._wake:
            self._newest = k  # an older step not taken yet is passed over: snapshot makes it
            self._wake.notify()

    def close(self, timeout: float = SNAPSHOT_WAIT) -> None:
        """End the worker after the step in its hands, and wait for it (at most `timeout` s): once a run
        has ended, no thread of its stream is left. The stream keeps its frames; snapshot makes the rest."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _take(self) -> int | None:
        """The newest pushed step, once the pacer's interval since the last one has passed; None when
        closed. Under the lock."""
        while True:
            if self._closed:
                return None
            if self._newest is None:
                self._wake.wait()
                continue
            wait = self._next_at - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
                continue
            k, self._newest = self._newest, None
            self._next_at = time.monotonic() + self.pacer.min_interval
            return k

    def _work(self) -> None:
        while True:
            with self._wake:
                k = self._take()
                if k is None:
                    return
                self._busy = True
            try:
                made = self.frames(k)
            except Exception:  # e.g. out of memory beside the run: the snapshot tries again and says why
                made = None
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()
            if made is not None:
                self.pacer.offer(lambda k=k, made=made: self._live_message(k, made))

    def _live_message(self, k: int, frames: list[bytes]) -> tuple[dict, list[bytes]]:
        return dict(self._message(k), decoder=self.decoder), frames

    def frames(self, k: int) -> list[bytes]:
        """Step k's encoded frames, one per view (made once, then kept)."""
        with self._lock:
            found = self._frames.get(k)
        if found is None:
            found = step_frames(self.traj, k, self.views, self.decoder)
            with self._lock:
                self._frames[k] = found
        return found

    def snapshot(self, upto: int | None = None, make: bool = True) -> list[list[bytes]]:
        """Every frame of steps 0..upto-1 (default: all recorded), one list per view; the steps never
        made live are decoded here in batches. make=False makes none: such a step's frames are b""
        (the page shows the nearest earlier frame) until a later snapshot makes them."""
        n = len(self.traj) if upto is None else upto
        with self._wake:  # the worker's step in hand is made once: wait for it rather than make it twice
            self._wake.wait_for(lambda: not self._busy, self.SNAPSHOT_WAIT)
            missing = [k for k in range(n) if k not in self._frames]
        if missing and make:
            made = steps_frames(self.traj, missing, self.views, self.decoder)
            with self._lock:
                for k, frames in zip(missing, made):
                    self._frames.setdefault(k, frames)
        with self._lock:
            blank = [b""] * len(self.views)
            per_step = [self._frames.get(k, blank) for k in range(n)]
        return [[frames[v] for frames in per_step] for v in range(len(self.views))]

    def missing(self, upto: int | None = None) -> int:
        """How many of steps 0..upto-1 have no frames yet."""
        n = len(self.traj) if upto is None else upto
        with self._lock:
            return sum(k not in self._frames for k in range(n))
