"""The generic path: any diffusers pipeline whose __call__ takes callback_on_step_end with "latents".

For the families in core/families nbdiffuse owns the denoising loop (core/run.py) and records
everything (x0, the (cond, uncond) pair, guidance per step). Any other pipeline runs its own loop here, and
nbdiffuse watches it through diffusers' callback_on_step_end, which runs after scheduler.step and
sees the latents (diffusers #3579: no x0, no noise prediction). So a generic run records x_t at
every step, and x0 from what the run's scheduler.step is given (core/sampler_tap.py: the guided model
output, as the pipeline made it); it can stop (pipe._interrupt, diffusers' own way), pause and single-step
(the callback waits), but it cannot re-weigh guidance after the fact (it never sees the (cond, uncond)
pair), branch, or change guidance while it runs: the pipeline reads guidance_scale once, and changing it
mid-run can crash (DESIGN.md). Its trajectories say so in params["capabilities"], and the widgets disable
what they cannot do.

Latent layout: the callback's latents are what the pipeline denoises. (B, C, h, w) latents are
recorded as they are. Packed latents (B, tokens, features) are unpacked with the pipeline's own
`_unpack_latents(latents, height, width, vae_scale_factor)` where it has one (Flux-style
pipelines); otherwise nbdiffuse cannot know their layout: the steps are recorded packed and the
run has no previews (traj.capabilities["previews"] is False, and image() says why).

Random numbers: pipe(...) gets the run's seeded generator, and torch's global RNG is seeded with the
run's seed for the call and restored after it (global_rng): a pipeline that draws from the global RNG
anyway runs the same from its seed, and the notebook's random state is left as it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import time
from typing import Any, Iterator

import torch

from .capabilities import KNOWN_FAMILIES, XT_ONLY, watched_reason, xt_only_reason
from . import img2img, inpaint
from .families import GenericPipeline
from .control import RunControl
from .controlnet import control_size
from .generic_control import plan_generic_control
from .locks import model_turn
from .params import RunParams
from .pipe_kwargs import check_for_generic, check_pipe_kwargs, recorded
from .pipe_decoder import has_decoder
from .prediction import sigma_at
from .locks import TOKENIZER_LOCK
from .recording import StepRecorder
from .run import Run, input_scale, run_end
from .run_args import check_run_args
from .sampler_tap import SamplerTap
from .start_noise import drawn_latents
from .schedulers import make_scheduler
from .step import Step
from .trajectory import Trajectory
from .validate import check_guidance_value, check_size

def prepare_generic(pipe: Any, prompt: str, negative_prompt: str | None = "", steps: int = 30, guidance: Any = 7.5,
                    seed: int = 0, scheduler: Any = None, height: int | None = None, width: int | None = None,
                    control: RunControl | None = None, on_step: Any = None, image: Any = None,
                    strength: float | None = None, pipe_kwargs: dict | None = None,
                    control_args: tuple = (None, None, 0.0, 1.0, False, None), mask_image: Any = None) -> "GenericRun":
    """trace.prepare() for a pipeline outside the known families: check everything, touch no model.
    control_args: trace's (control_image, control_scale, control_start, control_end, control_guess_mode,
    control_mode)."""
    adapter = GenericPipeline(pipe)
    name = type(pipe).__name__
    prompt, negative_prompt, steps, seed, control, on_step = check_run_args(prompt, negative_prompt, steps, seed,
                                                                            control, on_step)
    if mask_image is not None and not inpaint.takes_mask(pipe):  # refused before its picture is looked at
        raise inpaint.not_inpainting(pipe)
    takes_image = img2img.takes_image(pipe)
    if (image is not None or strength is not None) and not takes_image:
        raise ValueError(f"image/strength: image to image needs a family nbdiffuse knows ({KNOWN_FAMILIES}) or a "
                         f"pipeline whose __call__ takes image and strength; {name} is text to image")
    if takes_image:  # an image-to-image pipeline: its own image and strength, passed to pipe(...)
        if image is None:
            raise ValueError(f"image: {name} is an image-to-image pipeline; pass image=... (a PIL image, array or "
                             "file path) and strength")
        image = img2img.check_image(image)
        strength = img2img.check_strength(adapter.parameters["strength"].default if strength is None else strength)
    mask = inpaint.check_mask(mask_image, image, pipe)  # an inpainting pipeline's (core/inpaint.py)
    if callable(guidance) or (hasattr(guidance, "__len__") and not isinstance(guidance, (str, bytes))):
        raise ValueError(f"guidance must be one number for {name}: nbdiffuse watches this pipeline through "
                         "diffusers' callback_on_step_end, and the pipeline reads guidance_scale once, so a "
                         f"per-step schedule or a callable cannot be applied (got {type(guidance).__name__}); "
                         f"per-step guidance needs a family nbdiffuse knows ({KNOWN_FAMILIES})")
    w = check_guidance_value(guidance)
    params = adapter.parameters
    if negative_prompt and "negative_prompt" not in params:
        raise ValueError(f"negative_prompt={negative_prompt!r}: {name} takes no negative prompt; pass ''")
    factor = adapter.vae_factor
    control_kwargs, control_plan = plan_generic_control(pipe, params, *control_args[:4], steps, *control_args[4:])
    default = adapter.default_size()
    if image is not None and ("height" not in params or default is None):  # the picture's size (rounded down),
        # as SD img2img takes it, and as ZImageImg2ImgPipeline does when its height is left None
        default = (max(factor, image.height // factor * factor), max(factor, image.width // factor * factor))
    elif image is None and control_plan is not None and "height" in params and not adapter.sizes_itself():
        default = control_size(control_plan, factor)  # the control picture's, as ControlNet-XS takes it
    if default is None and (height is None or width is None):
        raise ValueError(f"height and width: nbdiffuse cannot tell the default size of {name}; pass both "
                         f"(multiples of {factor})")
    height = default[0] if height is None else check_size("height", height, factor)
    width = default[1] if width is None else check_size("width", width, factor)
    for key in ("height", "width"):
        if key not in params and (height, width) != default:
            raise ValueError(f"{key}: {name} takes no {key}; leave height/width at None")
    extra = check_for_generic(pipe, params, check_pipe_kwargs(pipe_kwargs))
    inpaint.check_crop(pipe, extra)
    if "use_resolution_binning" in params:  # the size as given, as the PixArt family runs it
        extra.setdefault("use_resolution_binning", False)
    sched = make_scheduler(pipe, scheduler)
    check_swap(pipe, sched, params)
    run = GenericRun(pipe, adapter, sched, prompt, negative_prompt, steps, [w] * steps, seed, height, width,
                     control, on_step)
    run.pipe_kwargs = extra
    run.image, run.strength, run.mask = image, strength, mask
    run.control_kwargs, run.control_plan = control_kwargs, control_plan
    return run


def check_swap(pipe: Any, sched: Any, params: dict) -> None:
    """Refuse another sampler where the pipeline hands its own set_timesteps keywords the other lacks
    (LatentConsistencyModelPipeline's original_inference_steps): pipe(...) would fail inside."""
    own, other = pipe.scheduler.set_timesteps, sched.set_timesteps
    lacks = sorted(set(inspect.signature(own).parameters) - set(inspect.signature(other).parameters))
    lacks = [k for k in lacks if k in params and k not in ("timesteps", "sigmas")]  # those two: only when given
    if lacks and type(sched) is not type(pipe.scheduler):
        raise ValueError(f"scheduler: {type(pipe).__name__} sets its timesteps with {', '.join(lacks)}, which "
                         f"{type(sched).__name__} does not take; use its own ({type(pipe.scheduler).__name__}, "
                         "scheduler=None)")


class GenericRun(Run):
    """A prepared run of a pipeline watched through callback_on_step_end; execute() runs pipe(...)."""

    def check_prompts(self) -> None:
        self.encoded, self.notices = (self.prompt, self.negative_prompt), []

    pipe_kwargs: dict[str, Any] = {}
    control_kwargs: dict[str, Any] = {}  # a control picture and its settings, under the pipeline's names
    control_plan: Any = None  # their record (core/generic_control.py)

    def params(self) -> RunParams:
        params = super().params()
        params["capabilities"] = dict(XT_ONLY)
        params["capabilities_reason"] = xt_only_reason(type(self.pipe).__name__)
        if self.pipe_kwargs:
            params["pipe_kwargs"] = recorded(self.pipe_kwargs)
        if self.control_plan is not None:
            params["control"] = self.control_plan.params()
        return params

    def _call_kwargs(self) -> dict[str, Any]:
        accepted = self.family.parameters
        kwargs: dict[str, Any] = {"prompt": self.prompt, "num_inference_steps": self.steps,
                                  "generator": self.generator, "output_type": "latent"}
        if "negative_prompt" in accepted and self.negative_prompt:
            kwargs["negative_prompt"] = self.negative_prompt
        if "guidance_scale" in accepted:
            kwargs["guidance_scale"] = self.schedule[0]
        for key in ("height", "width"):
            if key in accepted:
                kwargs[key] = getattr(self, key)
        if self.image is not None:
            kwargs.update(image=self.image, strength=self.strength)
        if self.mask is not None:
            kwargs["mask_image"] = self.mask
        return {**kwargs, **self.control_kwargs, **self.pipe_kwargs}

    def _ran_at(self, traj: Trajectory, latents: torch.Tensor) -> None:
        """Record the size that ran where the pipeline changed it (its own resolution binning)."""
        factor = self.family.vae_factor
        height, width = int(latents.shape[-2]) * factor, int(latents.shape[-1]) * factor
        if (height, width) != (self.height, self.width):
            traj.params["notices"].append(f"{type(self.pipe).__name__} ran at {width}x{height} where "
                                          f"{self.width}x{self.height} was asked (the pipeline changed the size: its own "
                                          "resolution binning or rounding)")
            traj.params["height"], traj.params["width"] = height, width

    def _x0_said(self, traj: Trajectory, x0: bool, why: str | None = None) -> None:
        """At the first step: whether the run records x0 (read from its sampler), and what it lacks, in words."""
        traj.params["capabilities"]["x0"] = x0
        traj.params["capabilities_reason"] = watched_reason(type(self.pipe).__name__, x0=x0) if x0 else \
            xt_only_reason(type(self.pipe).__name__, why=why)

    def _undrawable(self, latents: torch.Tensor) -> str | None:
        """Why (B, C, h, w) latents are not what the pipeline's VAE decodes as latents / scaling_factor (+ shift),
        nbdiffuse's way (Flux 2 style pipelines batch-norm patchified latents), or None."""
        vae = getattr(self.pipe, "vae", None)
        config = getattr(vae, "config", None)
        if latents.ndim != 4 or config is None:
            return None
        channels = getattr(config, "latent_channels", None)
        if channels is not None and int(channels) != int(latents.shape[1]):
            return (f"its latents have {latents.shape[1]} channels and its VAE takes {channels} (the pipeline "
                    "changes them before decoding)")
        if getattr(config, "scaling_factor", None) is None:
            return f"its VAE ({type(vae).__name__}) has no scaling_factor: the pipeline decodes its latents its own way"
        return None

    def _record_output(self, traj: Trajectory) -> None:
        """Record what pipe(...) returned where it is not its last step's latents, and say so in a notice:
        - the same shape, other numbers (SanaSprintPipeline divides them by sigma_data after its loop): the last
          step records what it returned;
        - the same numbers in another shape (Cosmos2TextToImagePipeline drops the frame axis): the steps stay as
          the loop had them, params["output_shape"] the shape it returned (traj.output_latents gives them so);
        - another shape and other numbers (Flux2KleinPipeline returns its VAE's latents, not its packed tokens):
          traj.output holds what it returned, and the steps stay as its loop had them."""
        output = getattr(self, "output", None)
        out = getattr(output, "images", None)
        if out is None and isinstance(output, (tuple, list)) and output:
            out = output[0]
        if not isinstance(out, torch.Tensor) or traj.stopped or len(traj) != self.steps or out.ndim < 3:
            return
        out = self._unpack(out[:1]).detach().to("cpu", copy=True)[0]
        last, name = traj.steps[-1], type(self.pipe).__name__
        if out.shape == last.latents.shape:
            if torch.equal(out.to(last.latents.dtype), last.latents):
                return
            traj.steps[-1] = dataclasses.replace(last, latents=out.to(last.latents.dtype), xt_scale=1.0)
            traj.params["notices"].append(f"{name} returns other latents than its last step's (it changes them "
                                          "after its loop): the last step records what pipe(...) returned")
            return
        shapes = f"{tuple(out.shape)}, where its steps are {tuple(last.latents.shape)}"
        if out.numel() == last.latents.numel() and out.dtype == last.latents.dtype and torch.equal(
                out.reshape(last.latents.shape), last.latents):
            traj.params["output_shape"] = [int(n) for n in out.shape]
            traj.params["notices"].append(f"{name} returns its last step's latents in another shape ({shapes}): "
                                          "the same numbers; traj.output_latents gives them in the shape it "
                                          "returned them")
            return
        traj.output = out
        traj.params["notices"].append(f"{name} returns other latents than its last step's, of another shape "
                                      f"({shapes}; it changes them after its loop): traj.output holds what "
                                      "pipe(...) returned")

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) as is; packed latents through the pipeline's own _unpack_latents where it has one."""
        if latents.ndim == 4:
            return latents
        unpack = getattr(type(self.pipe), "_unpack_latents", None)
        if unpack is None:
            return latents
        try:
            out = unpack(latents, self.height, self.width, self.family.vae_factor)
        except Exception:  # another convention than Flux's: keep them packed (no previews)
            return latents
        return out if out.ndim == 4 else latents

    def _record_start(self, traj: Trajectory, offset: int) -> int:
        """Image to image: record the first step of the schedule that ran and cut the plans to the steps after
        it; `offset` is where the loop's first step sat in the schedule. The pipeline ran the last steps, as
        its strength asked: they start at `offset` (a stopped run too), or, for a pipeline that set a schedule
        of those steps alone, where what it ran says; a run stopped before its first step counts as diffusers'
        image-to-image pipelines do (steps - int(steps * strength)). 0 for text to image."""
        if self.image is None:
            return 0
        start = offset
        if not len(traj):
            start = self.steps - int(self.steps * self.strength)
        elif not start and not traj.stopped:
            start = self.steps - len(traj)
        start = max(0, min(start, self.steps - 1))
        runs = self.steps - start
        traj.params.update(start_step=start, guidance_plan=traj.params["guidance_plan"][:runs],
                           guidance=traj.params["guidance"][:runs])
        control = traj.params.get("control")
        if control is not None:  # a control picture's scales, for the steps that run
            control.update(scale=control["scale"][:runs], scale_plan=control["scale_plan"][:runs])
        return start

    def execute(self) -> Trajectory:
        pipe, sched, control = self.pipe, self.scheduler, self.control
        traj = Trajectory(self.params(), initial_latents=torch.empty(0), pipe=pipe)
        self.trajectory = traj
        if self.control_plan is not None:  # the pictures go with the run (.nbd files keep them)
            traj.control_image = self.control_plan.image
        traj.mask = self.mask  # an inpainting run's mask goes with it too
        traj.start_picture = self.image  # as its start picture does
        state = {"i": 0, "k": 0, "began": time.perf_counter(), "first": None, "done": False, "warned": set(),
                 "times": None, "recorder": None, "offset": 0}
        own_step = sched.step
        tap = SamplerTap(sched)
        # pipe(...) encodes its prompts itself: it holds the tokenizers' lock until its first
        # scheduler step, so that no prompt check elsewhere changes a shared fast tokenizer's
        # padding and truncation under it (core/prompts.py).
        encoding = {"held": False}

        def release() -> None:
            if encoding["held"]:
                encoding["held"] = False
                TOKENIZER_LOCK.release()

        # The wrapper keeps the wrapped step's signature (functools.wraps): diffusers' pipelines pass
        # `generator` only to a step whose signature names it (prepare_extra_step_kwargs), and without
        # it stochastic samplers (LCM, euler_a) drew from the global RNG: the same seed ran differently.
        @functools.wraps(own_step)
        def step(*args: Any, **kwargs: Any) -> Any:
            release()
            # The first call's `sample` is the initial noise x_T exactly as the pipeline drew it.
            if traj.initial_latents.numel() == 0:
                sample = kwargs["sample"] if "sample" in kwargs else args[2]
                traj.initial_latents = self._unpack(sample[:1]).detach().to("cpu", copy=True)
                # The timesteps as numbers on the host, once: reading a device tensor at each
                # step would make the host wait for the GPU every step (core/recording.py).
                state["times"] = [float(x) for x in sched.timesteps.detach().cpu()]
                if self.image is not None:  # image to image: the loop runs the tail of the schedule
                    state["offset"] = schedule_offset(state["times"], args[1] if len(args) > 1 else kwargs.get("timestep"))
            if state["first"] is None:  # a step's first evaluation (Heun's second is not recorded)
                state["first"] = (args[1] if len(args) > 1 else kwargs.get("timestep"), state["i"])
                tap.seen(args, kwargs)  # its model output and x_t, before the sampler moves on: x0 (sampler_tap)
            return own_step(*args, **kwargs)

        publish = self.publisher(traj)

        def callback(pipeline: Any, i: int, t: Any, tensors: dict) -> dict:
            state["i"] = i + 1
            last = i + 1 + state["offset"] >= len(sched.timesteps)  # Heun's last step has one evaluation
            if state["done"] or not (getattr(sched, "state_in_first_order", True) or last):
                return tensors  # stopped (a pipeline without interrupt runs on: not recorded), or mid-Heun
            latents = self._unpack(tensors["latents"])
            if state["k"] == 0:  # (C, h, w) per step, or packed in a layout nbdiffuse cannot know
                drawn = noise.get("latents")  # its sampler saw a window, not x_T: what prepare_latents drew
                drawn = None if drawn is None else self._unpack(drawn[:1])
                if traj.initial_latents.shape[1:] != latents.shape[1:] and drawn is not None and \
                        drawn.shape[1:] == latents.shape[1:]:
                    traj.initial_latents = drawn.detach().to("cpu", copy=True)
                why = self._undrawable(latents)  # a VAE that decodes them another way than nbdiffuse's
                traj.params["capabilities"]["previews"] = latents.ndim == 4 and has_decoder(pipe) and why is None
                if why is not None:
                    traj.params["notices"].append(f"{type(pipe).__name__}: {why}: no previews")
                if tensors["latents"].ndim == 4:  # packed ones were unpacked at the size asked: they ran at it
                    self._ran_at(traj, latents)  # (BriaPipeline's vae_scale_factor counts its packing too)
                if latents.ndim != 4:
                    traj.params["notices"].append(f"{type(pipe).__name__} packs its latents (shape "
                                                  f"{tuple(latents.shape)}) in a layout nbdiffuse cannot know: "
                                                  "no previews")
            t0, i0 = state["first"] if state["first"] is not None else (t, i)
            state["first"] = None
            times = state["times"]
            i0 += state["offset"]  # the loop counts from its first step; the scheduler's arrays from the schedule's
            t0 = times[i0] if times is not None and 0 <= i0 < len(times) else float(t0)
            recorder = state["recorder"]
            if recorder is None:
                recorder = state["recorder"] = StepRecorder(latents.device)
            recorder.publish(publish)
            try:
                sigma = sigma_at(sched, i0)
            except Exception:  # a scheduler with neither sigmas nor alphas_cumprod
                sigma = None
            x0, b = tap.x0(sigma)
            x0 = None if x0 is None else self._unpack(x0)
            if state["k"] == 0:  # x0 where the first step's could be read (else x_t alone, as the run says)
                pieces = x0 is not None and x0.shape != latents.shape
                self._x0_said(traj, x0 is not None and not pieces, f"its sampler is given pieces of its latents, "
                              f"{_shape(x0)} of {_shape(latents)}: windows" if pieces else tap.lacking)
            if not traj.params["capabilities"]["x0"] or x0 is None or x0.shape != latents.shape:
                x0, b = None, 0.0
            try:
                scale = input_scale(sched, i + 1 + state["offset"], latents) if latents.ndim == 4 else 1.0
            except Exception:
                scale = 1.0
            scale *= tap.loop_scale()  # SCM keeps x_t at sigma_data times its variance-preserving form
            k = state["k"]
            now = time.perf_counter()
            plan = self.control_plan  # a control picture's scales, as the pipeline read them (its strength: unseen)
            recorder.add(Step(index=k, timestep=t0, sigma=sigma, guidance=self.schedule[0],
                              latents=recorder.copy(latents), pred_x0=None if x0 is None else recorder.copy(x0),
                              eps_cond=None, eps_uncond=None, x0_coeff=b, xt_scale=float(scale),
                              seconds=now - state["began"],
                              control_scale=None if plan is None else plan.recorded(plan.scales[0])))
            state["k"] = k + 1
            for live, what in (("guidance", "guidance"), ("control_scale", "the control scale"),
                               ("pag_scale", "the PAG scale")):
                if control is not None and getattr(control, live) is not None and live not in state["warned"]:
                    state["warned"].add(live)  # the pipeline read it once, before its loop
                    reason = watched_reason(type(pipe).__name__, f"changing {what} during a run",
                                            x0=traj.params["capabilities"]["x0"])
                    traj.params["notices"].append(f"live {what.removeprefix('the ')} ignored: {reason}")
            recorder.publish(publish)  # at once on a CPU; on a GPU once the copies are done
            if control is not None and control.paused:
                recorder.publish(publish, wait=True)  # the paused frame is the newest step
            if state["k"] < self.steps and control is not None and not control._wait_turn():
                state["done"] = True
                traj.stopped = True
                pipeline._interrupt = True  # diffusers' pipelines skip the remaining steps
            state["began"] = time.perf_counter()
            return tensors

        with model_turn(pipe, control) as held, torch.no_grad():
            if not held or (control is not None and not control._wait_turn()):
                traj.stopped = True
                self._record_start(traj, 0)
                return traj
            original = pipe.scheduler
            sched.step = step  # this run's own scheduler object: the pipeline's is put back below
            pipe.scheduler = sched
            try:
                with run_end(traj, lambda: state["recorder"], publish), drawn_latents(pipe) as noise:
                    TOKENIZER_LOCK.acquire()
                    encoding["held"] = True
                    state["began"] = time.perf_counter()
                    # the pipeline's own return value (latents: output_type="latent"); torch's global RNG
                    # seeded with the run's seed for the call and then put back, as it was
                    with global_rng(self.seed, pipe):
                        self.output = pipe(**self._call_kwargs(), callback_on_step_end=callback,
                                           callback_on_step_end_tensor_inputs=["latents"])
            finally:
                release()
                pipe.scheduler = original
                del sched.step
            start = self._record_start(traj, state["offset"] // int(getattr(sched, "order", 1) or 1))
            if len(traj) < self.steps - start and not traj.stopped:
                traj.stopped = True  # the pipeline ran fewer steps than asked (its own schedule)
            self._record_output(traj)
        return traj


def _shape(latents: torch.Tensor) -> str:
    """(C, h, w) latents' picture part in words: "8 x 64"."""
    return " x ".join(str(n) for n in latents.shape[-2:])


@contextlib.contextmanager
def global_rng(seed: int, pipe: Any) -> Iterator[None]:
    """torch's global RNG seeded with `seed` while a pipeline runs, then restored to what it was. Some
    pipelines draw from it instead of the generator they are given (StableDiffusion3ControlNetPipeline
    samples its control picture's latents with vae.encode(...).latent_dist.sample()): so their runs are
    reproducible from the seed, equal to `torch.manual_seed(seed); pipe(...)`, and leave the notebook's
    own random state alone."""
    device = getattr(pipe, "device", None)
    cuda = [device.index or 0] if getattr(device, "type", None) == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def schedule_offset(times: list[float] | None, t: Any) -> int:
    """Where a loop's first timestep `t` sits in the scheduler's whole schedule `times` (0: at its start,
    or where it cannot be found there)."""
    if times is None or t is None:
        return 0
    try:
        value = float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t)
    except (TypeError, ValueError):
        return 0
    return next((j for j, x in enumerate(times) if math.isclose(x, value, rel_tol=1e-6, abs_tol=1e-6)), 0)
