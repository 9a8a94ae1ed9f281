"""The denoising driver: run a pipeline one step at a time and record every step.

For the Stable Diffusion families nbdiffuse owns the loop (the shape of diffusers'
own StableDiffusionPipeline.__call__ loop, rewritten here) so that it can keep the
(cond, uncond) pair and x0 of each step, change guidance on any step, including
across 1.0, pause, and branch from any step. Setting diffusers' `_guidance_scale` from
a callback cannot do this: crossing 1.0 changes the batch size mid-run and crashes.
"""
from __future__ import annotations

import datetime
import inspect
import json
import threading
import time
import uuid
import weakref
from typing import Any, Callable

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from . import encode_cache
from . import img2img
from .control import RunControl
from .families import family_for
from .prediction import sigma_at, x0_coefficients
from .prompts import prepare_prompt
from .recording import StepRecorder
from .schedulers import make_scheduler, scheduler_name
from .trajectory import Step, Trajectory
from .validate import (check_callable, check_prompt, check_seed, check_size, check_steps, guidance_schedule)

OnStep = Callable[[Trajectory, Step], None]

_pipe_locks: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_pipe_locks_guard = threading.Lock()


def pipe_lock(pipe: Any) -> threading.RLock:
    """One lock per pipeline: two runs never race on one model."""
    with _pipe_locks_guard:
        lock = _pipe_locks.get(pipe)
        if lock is None:
            lock = _pipe_locks[pipe] = threading.RLock()
        return lock


def trace(pipe: Any, prompt: str, negative_prompt: str | None = "", steps: int = 30, guidance: Any = 7.5,
          seed: int = 0, scheduler: Any = None, height: int | None = None, width: int | None = None,
          control: RunControl | None = None, on_step: OnStep | None = None, image: Any = None,
          strength: float | None = None) -> Trajectory:
    """Run `pipe` on `prompt` step by step and return the recorded Trajectory.

    guidance: a number, a sequence of one number per step that runs, or a callable step -> number.
    control: a RunControl to change guidance, pause, step or stop from another thread.
    on_step: called as on_step(trajectory, step) after each step, in the running thread.
    image, strength: image to image (a PIL image, uint8 array or file path): the picture, noised
    to the level where the last int(steps * strength) steps begin (default strength 0.8), is
    denoised from there (diffusers' img2img semantics). Without `height`/`width` the run takes
    the picture's size (rounded down to what the model takes); otherwise the picture is resized.
    """
    run = prepare(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance, seed=seed,
                  scheduler=scheduler, height=height, width=width, control=control, on_step=on_step, image=image,
                  strength=strength)
    return run.execute()


def prepare(pipe: Any, prompt: str, negative_prompt: str | None = "", steps: int = 30, guidance: Any = 7.5,
            seed: int = 0, scheduler: Any = None, height: int | None = None, width: int | None = None,
            control: RunControl | None = None, on_step: OnStep | None = None, image: Any = None,
            strength: float | None = None) -> "Run":
    """Check every argument and build the run without touching the model (trace() = prepare().execute()).

    A pipeline outside the known families whose __call__ takes callback_on_step_end runs on the
    generic path (core/generic.py): x_t every step, stop and pause, no x0 / what-if / branch.
    """
    from .generic import is_generic, prepare_generic

    if is_generic(pipe):
        return prepare_generic(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance,
                               seed=seed, scheduler=scheduler, height=height, width=width, control=control,
                               on_step=on_step, image=image, strength=strength)
    family = family_for(pipe)
    prompt = check_prompt(prompt)
    negative_prompt = check_prompt(negative_prompt, "negative_prompt", allow_none=True) or ""
    steps = check_steps(steps)
    start = 0
    if image is not None:
        image = img2img.check_image(image)
        strength = img2img.check_strength(img2img.DEFAULT_STRENGTH if strength is None else strength)
        start = img2img.start_step(steps, strength)
    elif strength is not None:
        raise ValueError(f"strength={strength!r} needs an image: pass image=... (a PIL image, array or file path)")
    schedule = guidance_schedule(guidance, steps - start)
    seed = check_seed(seed)
    default_h, default_w = family.default_size()
    if image is not None:  # the picture's own size, as diffusers' img2img pipelines take it
        factor = family.vae_factor
        default_h, default_w = max(factor, image.height // factor * factor), max(factor, image.width // factor * factor)
    height = default_h if height is None else check_size("height", height, family.vae_factor)
    width = default_w if width is None else check_size("width", width, family.vae_factor)
    if control is not None and not isinstance(control, RunControl):
        raise TypeError(f"control must be an nbd.RunControl or None, got {type(control).__name__}")
    check_callable("on_step", on_step)
    sched = make_scheduler(pipe, scheduler)
    run = Run(pipe, family, sched, prompt, negative_prompt, steps, schedule, seed, height, width, control, on_step)
    run.image, run.strength, run.start = image, strength, start
    run.check_prompts()
    return run


class Run:
    """One prepared run; execute() does the model work (in whatever thread calls it)."""

    def __init__(self, pipe, family, scheduler, prompt, negative_prompt, steps, schedule, seed, height, width,
                 control, on_step):
        self.pipe, self.family, self.scheduler = pipe, family, scheduler
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.steps, self.schedule, self.seed = steps, schedule, seed
        self.height, self.width = height, width
        self.control, self.on_step = control, on_step
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.trajectory: Trajectory | None = None
        self.notices: list[str] = []
        self.encoded = (prompt, negative_prompt)
        self.image: Any = None  # image to image: the start picture, its strength and the first step that runs
        self.strength: float | None = None
        self.start = 0

    @property
    def total_steps(self) -> int:
        """Steps this run makes: all of `steps`, or the last int(steps * strength) for image to image."""
        return self.steps - self.start

    def check_prompts(self) -> None:
        """Resolve what the text encoder reads (before any model work); collect notices."""
        prompt, notices = prepare_prompt(self.pipe, self.prompt, "prompt")
        negative, more = prepare_prompt(self.pipe, self.negative_prompt, "negative_prompt")
        self.encoded, self.notices = (prompt, negative), notices + more

    # --- params ---------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        import diffusers
        import transformers

        from .. import __version__
        from .loading import lora_params

        pipe, sched = self.pipe, self.scheduler
        return {
            "id": uuid.uuid4().hex[:12],
            "model": model_name(pipe),
            "pipeline": type(pipe).__name__,
            "lora": lora_params(pipe),  # the LoRA and scale this run used (nbd.load_pipeline(..., lora=...))
            "family": self.family.name,
            "guidance_kind": self.family.guidance_kind,  # "cfg", or "distilled" (a model input: no what-if)
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "steps": self.steps,
            "scheduler": scheduler_name(sched),
            "scheduler_class": type(sched).__name__,
            "scheduler_config": jsonable(dict(sched.config)),
            "prediction_type": sched.config.get("prediction_type", "epsilon"),
            "encoded_prompt": self.encoded[0],
            "encoded_negative_prompt": self.encoded[1],
            "notices": list(self.notices),
            "guidance": list(self.schedule),
            "guidance_plan": list(self.schedule),
            "start_step": self.start,
            "strength": self.strength,
            "image": None if self.image is None else img2img.fingerprint(self.image),
            "height": self.height,
            "width": self.width,
            "dtype": str(self.family.dtype).replace("torch.", ""),
            "device": str(self.family.device),
            "versions": {"nbdiffuse": __version__, "diffusers": diffusers.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "parent": None,
            "branched_at": None,
        }

    # --- the run --------------------------------------------------------------------
    def execute(self) -> Trajectory:
        with pipe_lock(self.pipe), torch.no_grad():
            sched = self.scheduler
            self.family.set_timesteps(sched, self.steps, self.height, self.width)
            first = self.start * int(getattr(sched, "order", 1))  # position in sched.timesteps
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(first)
            self.cond = encode_cache.encode(self.family, *self.encoded, (self.height, self.width))
            if self.image is None:
                latents = self.family.initial_latents(self.height, self.width, self.generator, sched)
            else:
                clean = img2img.image_latents(self.family, self.image, self.height, self.width, self.generator)
                noise = randn_tensor(clean.shape, generator=self.generator, device=clean.device, dtype=clean.dtype)
                latents = img2img.noised(sched, clean, noise, sched.timesteps[first])
            traj = Trajectory(self.params(), initial_latents=latents.detach().to("cpu", copy=True), pipe=self.pipe)
            self.trajectory = traj
            return self._loop(traj, latents, i=first, k=0)

    def _guidance_at(self, k: int) -> float:
        live = self.control.guidance if self.control is not None else None
        if live is not None:
            return live
        return self.schedule[k] if k < len(self.schedule) else self.schedule[-1]

    def _loop(self, traj: Trajectory, latents: torch.Tensor, i: int, k: int) -> Trajectory:
        """Denoise from position i of scheduler.timesteps (step k) to the end, recording each step."""
        family, sched = self.family, self.scheduler
        timesteps = sched.timesteps
        step_kwargs = scheduler_step_kwargs(sched, self.generator)
        # Host-side copies of what each step records as numbers: reading them off the device
        # inside the loop would make the host wait for the GPU every step (core/recording.py).
        times = [float(t) for t in timesteps.detach().cpu()]
        sigmas = {j: sigma_at(sched, j) for j in range(i, len(timesteps))}
        recorder = StepRecorder(latents.device)
        record = recorder.copy

        def publish(step: Step) -> None:
            traj._append(step)
            if self.on_step is not None:
                self.on_step(traj, step)

        try:
            while i < len(timesteps):
                recorder.publish(publish)
                if self.control is not None and self.control.paused:
                    recorder.publish(publish, wait=True)  # the paused frame is the newest step
                if self.control is not None and not self.control._wait_turn():
                    traj.stopped = True
                    break
                w = self._guidance_at(k)
                use_cfg = family.uses_cfg(w)  # diffusers: guidance <= 1 runs the prompt alone; Flux-dev never
                began = time.perf_counter()
                first, extras = None, []
                # One step: one model evaluation, or two for 2nd-order samplers (Heun).
                while True:
                    t = timesteps[i]
                    x_in = model_input(sched, latents, t)
                    cond_out, uncond_out = family.predict(x_in, t, self.cond, use_cfg, guidance=w)
                    out = uncond_out + w * (cond_out - uncond_out) if use_cfg else cond_out
                    if first is None:
                        sigma = sigmas[i]
                        a, b = x0_coefficients(sched, sigma)
                        first = (times[i], sigma, b, a * x_in + b * out, cond_out, uncond_out)
                    else:
                        extras.append(out)
                    latents = sched.step(out, t, latents, **step_kwargs, return_dict=False)[0]
                    i += 1
                    if i >= len(timesteps) or getattr(sched, "state_in_first_order", True):
                        break
                t0, sigma, b, x0, cond_out, uncond_out = first
                step = Step(
                    index=k, timestep=t0, sigma=sigma, guidance=w,
                    latents=record(latents), pred_x0=record(x0), eps_cond=record(cond_out),
                    eps_uncond=None if uncond_out is None else record(uncond_out),
                    x0_coeff=float(b), xt_scale=input_scale(sched, i, latents), seconds=time.perf_counter() - began,
                    extra_outputs=tuple(record(e) for e in extras),
                )
                recorder.add(step)
                k += 1
                recorder.publish(publish)  # at once on a CPU; on a GPU once the copies are done
            recorder.publish(publish, wait=True)
        except BaseException as exc:  # keep what was done; the caller sees the error too
            try:  # steps already made are kept (without on_step: the run is failing)
                recorder.publish(traj._append, wait=True)
            except Exception:  # e.g. the device is out of memory or lost: those copies cannot finish
                recorder.discard()
            traj.stopped = True
            traj.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            traj.params["guidance"] = traj.guidances + traj.params["guidance_plan"][len(traj):]
        return traj


def model_input(sched: Any, latents: torch.Tensor, t: Any) -> torch.Tensor:
    """What the denoiser sees: DDPM-family samplers rescale x_t, flow-matching ones feed it as is."""
    scale = getattr(sched, "scale_model_input", None)
    return latents if scale is None else scale(latents, t)


def input_scale(sched: Any, i: int, latents: torch.Tensor) -> float:
    """The factor scale_model_input applies at position i (1 past the end).

    Worked out on a CPU tensor where the scheduler allows it (its sigmas live on the CPU, as
    diffusers keeps them), so reading the number does not wait for the GPU."""
    if i >= len(sched.timesteps):
        return 1.0
    if latents.device.type != "cpu":
        try:
            return float(model_input(sched, torch.ones(1, dtype=torch.float32), sched.timesteps[i]))
        except RuntimeError:  # a scheduler that keeps its tables on the device
            pass
    one = torch.ones(1, device=latents.device, dtype=torch.float32)
    return float(model_input(sched, one, sched.timesteps[i]))


def scheduler_step_kwargs(sched: Any, generator: torch.Generator) -> dict[str, Any]:
    params = inspect.signature(sched.step).parameters
    return {"generator": generator} if "generator" in params else {}


def model_name(pipe: Any) -> str:
    name = getattr(pipe, "_nbd_source", None) or pipe.config.get("_name_or_path") or ""
    return str(name)


def jsonable(value: Any) -> Any:
    """Configs hold tuples, numpy arrays and scalars; JSON wants lists and plain numbers."""
    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, torch.Tensor):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))
