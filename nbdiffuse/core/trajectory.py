"""Trajectory and Step: everything a traced run leaves behind, and the views on it."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from PIL import Image

from . import exports
from .capabilities import run_capabilities, run_reason
from .model_identity import check_family
from .decode import ApproxDecoder, approx_decoder_for, full_decode
from .families import adapter_for
from .guidance_map import guidance_map
from .image_codec import decode_picture
from .pag import MAX_PAG_SCALE, check_pag_value
from .params import RunParams
from .pipe_attrs import tiny_decoder
from .pipe_decoder import decoder_of, has_decoder
from .step import Step
from .trajfile import TrajectoryFileError, load_trajectory, save_trajectory
from .validate import check_choice, check_guidance_value, show_value
from .views import DECODERS, VIEWS
from .views import resize as _resize

FULL_CACHE_SIZE = 64  # full-VAE frames kept per trajectory (LRU)
class StepIndexError(IndexError, ValueError):
    """A step index out of range: an IndexError for sequences, a ValueError for bad input."""


@dataclass
class Trajectory:
    """The record of one run: params that reproduce it, the initial noise and every step."""

    params: RunParams  # a plain dict; core/params.py documents its keys
    initial_latents: torch.Tensor
    steps: list[Step] = field(default_factory=list)
    stopped: bool = False
    error: str | None = None
    parent: "Trajectory | None" = None
    branched_at: int | None = None
    approx: ApproxDecoder | None = None
    pipe: Any = field(default=None, repr=False, compare=False)
    # {(step, view): WebP / JPEG / PNG bytes}: the full VAE's pictures a loaded run carries
    # (core/saved_frames.py), decoded when shown
    saved_frames: dict = field(default_factory=dict, repr=False, compare=False)
    # the control picture of a ControlNet run (params["control"]; core/controlnet.py), kept in .nbd files;
    # a Multi-ControlNet run's: a list, one per ControlNet
    control_image: Image.Image | list[Image.Image] | None = field(default=None, repr=False, compare=False)
    # the latents pipe(...) returned where they are not its last step's latents in another shape (a watched run,
    # core/generic.py: Flux 2 Klein returns its VAE's latents, not the packed tokens its loop denoises), kept in
    # .nbd files; None where pipe(...) returned the last step's latents (see output_latents)
    output: torch.Tensor | None = field(default=None, repr=False, compare=False)
    # an inpainting run's mask (params["mask"]; core/inpaint.py: white repaints), at the start picture's size, kept
    # in .nbd files
    mask: Image.Image | None = field(default=None, repr=False, compare=False)
    # an image-to-image or inpainting run's start picture (params["image"] is its fingerprint), as the run took it,
    # kept in .nbd files: a loaded run's decision curve and an inpainting run's branches start from it again
    start_picture: Image.Image | None = field(default=None, repr=False, compare=False)
    # an inpainting run of a family's loop: the masks, latents and noise it carried (core/inpaint_loop.py), which its
    # branches go on with; not kept in files (made again from the start picture and the mask)
    inpainting: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._full_cache: OrderedDict[tuple, Image.Image] = OrderedDict()

    # --- sequence -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(list(self.steps))

    def __getitem__(self, k: int) -> Step:
        return self.steps[self._index(k)]

    def _index(self, k: Any, name: str = "k") -> int:
        n = len(self.steps)
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"{name} must be an int step index, got {k!r}")
        if not -n <= k < n:
            raise StepIndexError(f"{name} must be a step index in 0..{n - 1} (or -{n}..-1), got {k}")
        return k % n

    def _append(self, step: Step) -> None:
        with self._lock:
            self.steps.append(step)

    @property
    def id(self) -> str:
        return self.params["id"]

    @property
    def total_steps(self) -> int:
        """Steps the run was planned for (len() is smaller when it was stopped)."""
        return int(self.params["steps"]) - int(self.params.get("start_step") or 0)

    @property
    def notices(self) -> list[str]:
        """What the run changed about its input: truncated prompts, unknown words ignored."""
        return list(self.params.get("notices", []))

    @property
    def capabilities(self) -> dict[str, bool]:
        """What this run can give: x0, what_if, branch, live_guidance, previews (all True for the known families)."""
        return run_capabilities(self.params)

    @property
    def has_x0(self) -> bool:
        return bool(self.capabilities["x0"])

    @property
    def default_view(self) -> str:
        """"x0" where the run recorded it, else "xt"."""
        return "x0" if self.has_x0 else "xt"

    def _refuse(self, what: str) -> None:
        """What a run of a pipeline that runs its own loop (core/generic.py) cannot give, and why."""
        raise ValueError(run_reason(self.params, what, hint="" if self.has_x0 else "; view='xt' works"))

    @property
    def guidances(self) -> list[float]:
        """Guidance actually used at each step."""
        return [s.guidance for s in self.steps]

    @property
    def final_latents(self) -> torch.Tensor:
        return self.steps[-1].latents if self.steps else self.initial_latents[0]

    @property
    def output_latents(self) -> torch.Tensor:
        """What the pipeline returned (output_type="latent", without its batch row): traj.output where it returned
        other latents than its last step's, those in the shape it returned them where only the shape differs
        (params["output_shape"]: Cosmos 2 drops the frame axis), else the last step's latents."""
        if self.output is not None:
            return self.output
        shape = self.params.get("output_shape")
        return self.final_latents.reshape(shape) if shape is not None else self.final_latents

    # --- views ----------------------------------------------------------------------
    def latents_for(self, k: int, view: str = "x0") -> torch.Tensor:
        """The latents a view of step k shows: pred_x0, or x_t in the form the model sees."""
        check_choice("view", view, VIEWS)
        step = self[k]
        if view == "x0" and step.pred_x0 is None:
            self._refuse("x0")
        if not self.capabilities["previews"]:
            how = ("has no decoder for them (no vae, movq or vqgan, or a VAE for other channels)"
                   if step.latents.ndim == 3 else
                   "packs them in a layout nbdiffuse cannot know (no (C, h, w) form)")
            raise ValueError(f"this run's latents have shape {tuple(step.latents.shape)} and "
                             f"{self.params.get('pipeline')} {how}, so it has no previews; its steps are "
                             "recorded all the same")
        return step.pred_x0 if view == "x0" else step.latents * step.xt_scale

    def image(self, k: int = -1, view: str = "x0", decoder: str = "auto", size: Any = "output") -> Image.Image:
        """Step k as a picture. `size`: "output" (the run's size), "latent", or (width, height).

        decoder "auto": the frame the run carries for that step and view (a loaded run saved with its
        pictures: exactly the model's VAE picture, compressed), else the full VAE when the pipeline is
        attached, else approx. "full" without the pipeline gives the carried frame where there is one.
        """
        decoder = self.decoder_used(k, view, decoder)
        index = self._index(k)
        latents = self.latents_for(index, view)
        if decoder == "saved":
            picture = self._saved_picture(index, view, self.saved_frames[(index, view)])
        elif decoder == "approx":
            picture = self.approx_decoder()(latents)
        else:
            picture = self._cached_decode(index, view, decoder, latents)
        return _resize(picture, size, (self.params["width"], self.params["height"]))

    def decoder_used(self, k: int = -1, view: str = "x0", decoder: str = "auto") -> str:
        """What image(k, view, decoder) shows: "saved" (the frame the run carries), "full", "approx" or "tiny"."""
        check_choice("view", view, VIEWS)
        check_choice("decoder", decoder, DECODERS)
        saved = (self._index(k), view) in self.saved_frames
        if decoder == "auto":
            return "saved" if saved else "full" if self.pipe is not None else "approx"
        return "saved" if decoder == "full" and self.pipe is None and saved else decoder

    @property
    def final_image(self) -> Image.Image:
        """The run's result: decoded with the full VAE when the pipeline is at hand, else its saved frame
        (or approx when it carries none)."""
        return self.image(-1, self.default_view, "full" if self.pipe is not None else "auto")

    @property
    def has_saved_frames(self) -> bool:
        """Whether this run carries saved frames (the model's own VAE pictures) for every step of its
        default view: a run loaded from a file saved with them, which image() shows by default."""
        return len(self) > 0 and all((k, self.default_view) in self.saved_frames for k in range(len(self)))

    def saved_frame(self, k: int, view: str = "x0") -> bytes | None:
        """The carried frame of step k and view as the file holds it (WebP, JPEG or PNG bytes at the
        output size, ready for an <img>), or None."""
        check_choice("view", view, VIEWS)
        return self.saved_frames.get((self._index(k), view))

    def approx_decoder(self) -> ApproxDecoder:
        if self.approx is None:
            if self.pipe is None:
                raise ValueError("this trajectory has no approx decoder and no pipeline to fit one; attach(pipe) first")
            self.approx = approx_decoder_for(decoder_of(self.pipe))
        return self.approx

    def _cached_decode(self, index: int, view: str, decoder: str, latents: torch.Tensor) -> Image.Image:
        vae = self._vae(decoder)
        key = (index, view, decoder, id(vae))
        return self._cached(key, lambda: full_decode(vae, latents))

    def _cached_full(self, index: int, view: str) -> Image.Image | None:
        """The full VAE's picture of a step and view when the decode cache holds it (no decoding)."""
        if self.pipe is None or not has_decoder(self.pipe):
            return None
        with self._lock:
            return self._full_cache.get((index, view, "full", id(decoder_of(self.pipe))))

    def _saved_picture(self, index: int, view: str, data: bytes) -> Image.Image:
        def decode() -> Image.Image:
            try:
                return decode_picture(data)
            except ValueError as exc:
                raise TrajectoryFileError(f"saved frame 'frames.{index}.{view}' of this run is corrupt: "
                                          f"{exc}") from None

        return self._cached((index, view, "saved", None), decode)

    def _cached(self, key: tuple, make: Any) -> Image.Image:
        with self._lock:
            if key in self._full_cache:
                self._full_cache.move_to_end(key)
                return self._full_cache[key]
        picture = make()
        with self._lock:
            self._full_cache[key] = picture
            while len(self._full_cache) > FULL_CACHE_SIZE:
                self._full_cache.popitem(last=False)
        return picture

    def _vae(self, decoder: str) -> Any:
        if self.pipe is None:
            raise ValueError(f"decoder={decoder!r} needs the pipeline that made this run: traj.attach(pipe), "
                             "or use decoder='approx'")
        if decoder == "tiny":
            tiny = tiny_decoder(self.pipe)
            if tiny is None:
                raise ValueError("decoder='tiny' needs a tiny autoencoder: nbd.set_tiny_decoder(pipe, AutoencoderTiny(...))")
            return tiny
        return decoder_of(self.pipe)

    def attach(self, pipe: Any) -> "Trajectory":
        """Attach the pipeline that made this run (a loaded trajectory can then decode with its VAE)."""
        check_family(self.params, pipe, "decode it with its VAE")  # core/model_identity.py
        family = adapter_for(pipe)
        # (B, C, h, w) latents a run decodes: C is the VAE's latent channels. A run without previews decodes
        # nothing (packed latents (B, tokens, features), or patchified ones its VAE does not take).
        decodes = self.initial_latents.ndim == 4 and self.capabilities["previews"]
        channels = int(self.initial_latents.shape[1]) if decodes else None
        if channels is not None and family.latent_channels is not None and family.latent_channels != channels:
            raise ValueError(f"pipe has {family.latent_channels} latent channels but this trajectory has {channels}")
        self.pipe = pipe
        with self._lock:
            self._full_cache.clear()
        return self

    # --- guidance after the fact ----------------------------------------------------
    def guided_x0(self, k: int, guidance: float, pag_scale: float | None = None) -> torch.Tensor:
        """x0 at step k as if guidance had been `guidance` there: no model call.

        x0 is affine in the model output, so re-weighing the stored (cond, uncond) pair
        gives x0(w) = pred_x0 + (w - w_used) * B * (eps_cond - eps_uncond).
        pag_scale: a PAG run's (core/pag.py) perturbed-attention guidance as if it had been this at step k,
        re-weighed the same way with (eps_cond - eps_perturbed); None keeps the step's.
        """
        w = check_guidance_value(guidance)
        step = self[k]
        if step.pred_x0 is None or step.eps_cond is None:  # x_t alone, or x0 without the (cond, uncond) pair
            self._refuse("a what-if")
        delta = None
        if pag_scale is not None:
            p = check_pag_value("pag_scale", pag_scale, MAX_PAG_SCALE)
            if p != (step.pag_scale or 0.0):
                if step.eps_perturbed is None:
                    raise ValueError(f"pag_scale: step {step.index} ran without perturbed-attention guidance "
                                     f"(its pag_scale {step.pag_scale or 0:g}, or not a PAG pipeline's run), so it has "
                                     "no perturbed prediction to re-weigh; trace a PAG pipeline with pag_scale > 0")
                delta = (step.eps_cond.float() - step.eps_perturbed.float()) * (step.x0_coeff * (p - step.pag_scale))
        if w != step.guidance:
            if step.eps_uncond is None and self.params.get("guidance_kind") == "distilled":
                raise ValueError(f"this model takes guidance as an input (distilled guidance, e.g. Flux-dev): step "
                                 f"{step.index} has no unconditional prediction to re-weigh, so a what-if needs a new "
                                 f"run from there: nbd.branch(pipe, traj, at={max(step.index - 1, 0)}, guidance={w:g})")
            if step.eps_uncond is None:
                raise ValueError(f"step {step.index} ran without guidance (guidance {step.guidance:g} <= 1), so it has "
                                 "no unconditional prediction to re-weigh; trace with guidance > 1 at that step")
            cfg = (step.eps_cond.float() - step.eps_uncond.float()) * (step.x0_coeff * (w - step.guidance))
            delta = cfg if delta is None else delta + cfg
        if delta is None:
            return step.pred_x0
        return (step.pred_x0.float() + delta).to(step.pred_x0.dtype)

    @property
    def tokens(self) -> list[str]:
        """The prompt's words as its text encoder read them, for traj.attention (a run traced with attention=True)."""
        return list(self._attention_words()["words"])

    def attention(self, k: int, word: Any) -> torch.Tensor:
        """(h, w) float tensor over the latent grid: how much of the model's cross-attention at step k went to
        `word` (a word of traj.tokens, or its index there), from each latent position; a word of several
        tokens sums them. Averaged over heads and layers (core/attention.py)."""
        known = self._attention_words()
        words, rows = known["words"], known["rows"]
        if isinstance(word, bool) or not isinstance(word, (int, str)):
            raise TypeError(f"word must be a word of traj.tokens or its index, got {show_value(word)}")
        if isinstance(word, str):
            matches = [i for i, w in enumerate(words) if w.lower() == word.lower()]
            if not matches:
                raise ValueError(f"word {word!r} is not a word of this run's prompt; its words: {', '.join(words)}")
            index = matches[0]
        else:
            if not -len(words) <= word < len(words):
                raise ValueError(f"word index {word} is out of range: the prompt has {len(words)} words")
            index = word % len(words)
        maps = self[k].attention
        if maps is None:
            raise ValueError(f"step {self[k].index} has no attention maps (a branch's own steps record none)")
        picked = [r for r, w in enumerate(rows) if w == index]
        return maps[picked].float().sum(0)

    def _attention_words(self) -> dict:
        known = self.params.get("attention")
        if not known:
            raise ValueError("this run was traced without attention maps: trace it with attention=True")
        return known

    def guidance_map(self, k: int) -> torch.Tensor:
        """(h, w) over the latent grid: where the prompt acts at step k, as the distance between the x0
        predicted with the prompt and with the negative prompt (core/guidance_map.py). No model call."""
        return guidance_map(self, k)

    def guided_image(self, k: int, guidance: float, decoder: str = "approx", size: Any = "output",
                     pag_scale: float | None = None) -> Image.Image:
        """guided_x0(k, guidance, pag_scale) as a picture; decoders as image(). At the guidance (and PAG) the step
        used, that is image(k, "x0"): "auto" (and "full" without the pipeline) shows the run's saved frame there."""
        check_choice("decoder", decoder, DECODERS)
        latents = self.guided_x0(k, guidance, pag_scale=pag_scale)
        if latents is self[k].pred_x0 and decoder in ("auto", "full"):
            return self.image(k, "x0", decoder=decoder, size=size)
        if decoder == "auto":
            decoder = "full" if self.pipe is not None else "approx"
        if decoder == "approx":
            picture = self.approx_decoder()(latents)
        else:
            picture = full_decode(self._vae(decoder), latents)
        return _resize(picture, size, (self.params["width"], self.params["height"]))

    # --- files ----------------------------------------------------------------------
    def save(self, path: Any, frames: bool = True) -> None:
        """Write the run as a .nbd file. frames=True (the default) stores every step's pictures as the
        model's VAE draws them (x0 and x_t; x_t alone for runs that record only x_t), so the run
        shows them when opened without its model; frames=False writes a smaller file without them."""
        save_trajectory(self, path, frames=frames)

    @classmethod
    def load(cls, path: Any, pipe: Any = None) -> "Trajectory":
        traj = load_trajectory(path, cls)
        return traj.attach(pipe) if pipe is not None else traj

    def to_gif(self, path: Any, view: str = "x0", fps: float = 8, decoder: str = "auto",
               size: Any = 256, hold_last: float = 1.0, start: int | None = None, stop: int | None = None) -> None:
        """An animated GIF of steps [start, stop) of one view."""
        exports.write_gif(self, path, view=view, fps=fps, decoder=decoder, size=size, hold_last=hold_last,
                  start=start, stop=stop)

    def to_png(self, path: Any, k: int = -1, view: str = "x0", decoder: str | None = None, size: Any = "output") -> None:
        """Step k as a PNG carrying every parameter in its "parameters" text chunk."""
        exports.write_png(self, path, k=k, view=view, decoder=decoder, size=size)

    def to_html(self, path: Any, decoder: str = "auto", size: int = 256) -> None:
        """A self-contained HTML page (frames, scrubber, parameters) that works offline in any browser."""
        exports.write_html(self, path, decoder=decoder, size=size)

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "complete" if len(self) == self.total_steps else "running"
        return (f"Trajectory({self.params.get('prompt')!r}, steps={len(self)}/{self.total_steps} {state}, "
                f"scheduler={self.params.get('scheduler')!r}, seed={self.params.get('seed')})")
