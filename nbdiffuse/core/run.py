"""The step loop: one prepared run, denoised step by step, every step recorded, with one end.

For the known families nbdiffuse owns the loop (the shape of diffusers' own
StableDiffusionPipeline.__call__ loop, rewritten here) so that it can keep the (cond, uncond)
pair and x0 of each step, change guidance on any step, pause, and branch from any step.
trace.py checks the arguments and builds a Run; branch.py rebuilds a sampler's state after a
step and calls Run.resume() from there; generic.py's GenericRun drives a pipeline's own loop
instead. All of them end through run_end(): the one place a run's last steps are published,
its failure recorded and its guidance written back.
"""
from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import time
import uuid
from typing import Any, Callable, Iterator

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .. import _version
from . import encode_cache, img2img, inpaint, inpaint_loop
from .capabilities import DISTILLED, distilled_reason
from .controlnet import scales_used
from .lora import lora_params
from .locks import model_turn
from .pag import PagLayers, PagPlan, guided
from .params import RunParams
from .pipe_attrs import model_name
from .prediction import as_sampler_goes_on, sigma_at, x0_coefficients
from .prompts import prepare_prompt
from .recording import StepRecorder
from .schedulers import scheduler_name
from .step import Step
from .trajectory import Trajectory


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
        self.start_clean: torch.Tensor | None = None  # or clean latents, noised to the start step (decision.py)
        self.strength: float | None = None
        self.mask: Any = None  # inpainting: the mask (white repaints; core/inpaint.py)
        self.inpainting: inpaint_loop.Inpainting | None = None  # what an inpainting run carries through the loop
        self.start = 0
        self.attention: Any = None  # an AttentionRecorder (trace(attention=True)), with attention_words
        self.attention_words: dict | None = None
        self.walk: Any = None  # a walk between two runs (core/walks.py): its starting noise and text conditioning
        self.controlnet: Any = None  # a ControlStep (core/controlnet.py) for a run with a control picture
        self.pag: PagPlan | None = None  # a PAG pipeline's settings (core/pag.py)

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
    def params(self) -> RunParams:
        """Everything that reproduces this run (core/params.py says what each key holds)."""
        import diffusers
        import transformers

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
            **({"mask": inpaint.record(self.mask)} if self.mask is not None else {}),
            "height": self.height,
            "width": self.width,
            "dtype": str(self.family.dtype).replace("torch.", ""),
            "device": str(self.family.device),
            "versions": {"nbdiffuse": _version.__version__, "diffusers": diffusers.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "parent": None,
            "branched_at": None,
            **({"attention": self.attention_words} if self.attention_words is not None else {}),
            **(distilled_params(type(pipe).__name__) if self.family.guidance_kind == "distilled" else {}),
            **({"walk": self.walk.params()} if self.walk is not None else {}),
            **({"control": self.controlnet.plan.params()} if self.controlnet is not None else {}),
            **({"pag": self.pag.params(self.total_steps)} if self.pag is not None else {}),
        }

    # --- the run --------------------------------------------------------------------
    def execute(self) -> Trajectory:
        with model_turn(self.pipe, self.control) as held, torch.no_grad():
            sched = self.scheduler
            self.family.set_timesteps(sched, self.steps, self.height, self.width)
            first = self.start * int(getattr(sched, "order", 1))  # position in sched.timesteps
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(first)
            if not held:  # stopped while another run held the model: no step made, none of its work done
                latents = self.family.initial_latents(self.height, self.width, self.generator, sched)
                self.trajectory = self._trajectory(latents)
                self.trajectory.stopped = True
                return self.trajectory
            self.cond = encode_cache.encode(self.family, *self.encoded, (self.height, self.width))
            if self.controlnet is not None:  # before the start noise: Flux's draws its pictures' latents first
                self.controlnet.begin(self.generator)
            latents = self._start_latents(sched, first)
            traj = self._trajectory(latents)
            if self.controlnet is not None:
                traj.control_image = self.controlnet.plan.image
            self.trajectory = traj
            with self.attention if self.attention is not None else contextlib.nullcontext():
                return self.resume(traj, latents, position=first, step=0)

    def _start_latents(self, sched: Any, first: int) -> torch.Tensor:
        """The latents the run's first step denoises, at position `first` of the schedule, drawn from the run's
        generator as its pipeline draws them."""
        family = self.family
        if self.mask is not None:  # inpainting: the picture's and the masked picture's latents, the mask, the noise
            self.inpainting = inpaint_loop.make(family, self.image, self.mask, self.height, self.width, self.strength,
                                                self.generator) if self.inpainting is None else \
                inpaint_loop.with_new_noise(self.inpainting, self.generator)  # a decision curve's continuation
            return inpaint_loop.start_latents(self.inpainting, sched, first, self.strength, self.start_clean)
        if self.image is None and self.start_clean is None:
            latents = family.initial_latents(self.height, self.width, self.generator, sched)
            if self.walk is not None:
                self.cond, latents = self.walk.start(self, self.cond, latents)
            return latents
        # image to image, or a decision curve's continuation from its clean latents (a picture's run or not)
        clean = self.start_clean.to(family.device, family.dtype) if self.start_clean is not None else \
            img2img.image_latents(family, self.image, self.height, self.width, self.generator)
        noise = randn_tensor(clean.shape, generator=self.generator, device=clean.device, dtype=clean.dtype)
        return img2img.noised(sched, clean, noise, sched.timesteps[first])

    def _trajectory(self, latents: torch.Tensor) -> Trajectory:
        """The run's record, before its first step: its params, its first latents, its pictures and masks."""
        traj = Trajectory(self.params(), initial_latents=latents.detach().to("cpu", copy=True), pipe=self.pipe)
        traj.start_picture, traj.mask, traj.inpainting = self.image, self.mask, self.inpainting
        return traj

    def _guidance_at(self, k: int) -> float:
        live = self.control.guidance if self.control is not None else None
        if live is not None:
            return live
        return self.schedule[k] if k < len(self.schedule) else self.schedule[-1]

    def _pag_at(self, k: int) -> float:
        """The pag_scale step k asks: the live one (RunControl.set_pag_scale), else the plan's."""
        live = self.control.pag_scale if self.control is not None else None
        return live if live is not None else self.pag.asked(k)

    def publisher(self, traj: Trajectory) -> Callable[[Step], None]:
        """What makes a recorded step visible: appended to `traj`, then on_step (in the running thread)."""
        def publish(step: Step) -> None:
            traj._append(step)
            if self.on_step is not None:
                self.on_step(traj, step)

        return publish

    def resume(self, traj: Trajectory, latents: torch.Tensor, position: int, step: int) -> Trajectory:
        """Denoise from `position` of scheduler.timesteps (step index `step`) to the end, recording each step.

        execute() starts here at the run's first step; branch() calls it once it has brought this run's
        scheduler, generator and latents to the state after the branch point. The caller holds pipe_lock
        and torch.no_grad()."""
        i, k = position, step
        family, sched = self.family, self.scheduler
        timesteps = sched.timesteps
        step_kwargs = scheduler_step_kwargs(sched, self.generator)
        # Host-side copies of what each step records as numbers: reading them off the device
        # inside the loop would make the host wait for the GPU every step (core/recording.py).
        host_times = timesteps.detach().cpu()
        times = [float(t) for t in host_times]
        sigmas = {j: sigma_at(sched, j) for j in range(i, len(timesteps))}
        recorder = StepRecorder(latents.device)
        record = recorder.copy
        publish = self.publisher(traj)
        control = self.controlnet
        if control is not None and not control.pictures:  # a branch's (a run's were made before its noise)
            control.begin()
        plan, inpainting = self.pag, self.inpainting
        layers = PagLayers(self.pipe, family.denoiser, plan) if plan is not None else contextlib.nullcontext()

        with run_end(traj, lambda: recorder, publish), layers:
            while i < len(timesteps):
                recorder.publish(publish)
                if self.control is not None and self.control.paused:
                    recorder.publish(publish, wait=True)  # the paused frame is the newest step
                if self.control is not None and not self.control._wait_turn():
                    traj.stopped = True
                    break
                w = self._guidance_at(k)
                use_cfg = family.uses_cfg(w)  # diffusers: guidance <= 1 runs the prompt alone; Flux-dev never
                scale = control.scale_at(k) if control is not None else None
                began = time.perf_counter()
                first, extras, acted, pag = None, [], None, False
                if plan is not None:  # a PAG pipeline's run: does this step perturb (its pag_scale > 0, live too)?
                    asked = self._pag_at(k)
                    traj.params["pag"]["scales"][k] = asked  # as asked, where branches and decision curves read it
                    pag = plan.perturbs(asked)
                    layers.use(use_cfg if pag else None)
                    if self.attention is not None:  # the prompt's row: (uncond, cond, perturbed) or (cond, perturbed)
                        self.attention.row = (1 if use_cfg else 0) if pag else -1
                # One step: one model evaluation, or two for 2nd-order samplers (Heun).
                while True:
                    t = timesteps[i]
                    x_in = model_input(sched, latents, t)
                    given, strength, perturbed, p = {"guidance": w}, None, None, None
                    if control is not None:  # its residuals go to the denoiser (families without ControlNets take none)
                        given["extra"], strength = control.residuals(x_in, t, self.cond, use_cfg, scale, i,
                                                                     len(timesteps), guidance=w, perturbed=pag)
                    seen = x_in if inpainting is None else inpainting.denoiser_input(x_in)  # an inpainting UNet's
                    if not pag:
                        cond_out, uncond_out = family.predict(seen, t, self.cond, use_cfg, **given)
                    else:
                        cond_out, uncond_out, perturbed = family.predict_perturbed(seen, t, self.cond, use_cfg, **given)
                        p = plan.scale_at(host_times[i], asked)
                    out = guided(cond_out, uncond_out if use_cfg else None, w, perturbed, p)
                    if first is None:
                        sigma = sigmas[i]
                        a, b = x0_coefficients(sched, sigma)
                        x0 = as_sampler_goes_on(sched, a * x_in + b * out)  # clipped where the sampler clips
                        first = (times[i], sigma, b, x0, cond_out, uncond_out, perturbed, p)
                        if control is not None:  # the first evaluation's, as for the outputs
                            acted = 0.0 if strength is None else recorder.number(strength)
                    else:
                        extras.append(out)
                    latents = sched.step(out, t, latents, **step_kwargs, return_dict=False)[0]
                    if inpainting is not None:  # a blended run: the kept part put back, at the next step's level
                        latents = inpainting.blend(sched, latents, host_times, i)
                    i += 1
                    if i >= len(timesteps) or getattr(sched, "state_in_first_order", True):
                        break
                t0, sigma, b, x0, cond_out, uncond_out, perturbed, p = first
                maps = self.attention.step_done() if self.attention is not None else None
                recorder.add(Step(
                    index=k, timestep=t0, sigma=sigma, guidance=w,
                    latents=record(latents), pred_x0=record(x0), eps_cond=record(cond_out),
                    eps_uncond=None if uncond_out is None else record(uncond_out),
                    x0_coeff=float(b), xt_scale=input_scale(sched, i, latents), seconds=time.perf_counter() - began,
                    extra_outputs=tuple(record(e) for e in extras), attention=maps,
                    control_scale=None if control is None else control.plan.recorded(scale),
                    control_strength=acted if control is not None else None,
                    eps_perturbed=None if perturbed is None else record(perturbed),
                    pag_scale=None if plan is None else p or 0.0,  # 0: a PAG pipeline's step with pag_scale 0
                ))
                k += 1
                recorder.publish(publish)  # at once on a CPU; on a GPU once the copies are done
        return traj


@contextlib.contextmanager
def run_end(traj: Trajectory, recorder: Callable[[], StepRecorder | None],
            publish: Callable[[Step], None]) -> Iterator[None]:
    """The one end of every run (this loop, the generic path's, a branch's).

    Done: the steps still being copied are published. Failed: the steps already made are kept
    (without on_step: the run is failing), the run is marked stopped with its error, and the error
    goes on to the caller. Either way params["guidance"] becomes the guidance used, then the plan
    for the steps never made. `recorder` gives the run's StepRecorder, or None before it has one."""
    try:
        yield
        made = recorder()
        if made is not None:
            made.publish(publish, wait=True)
    except BaseException as exc:  # keep what was done; the caller sees the error too
        made = recorder()
        if made is not None:
            try:
                made.publish(traj._append, wait=True)
            except Exception:  # e.g. the device is out of memory or lost: those copies cannot finish
                made.discard()
        traj.stopped = True
        traj.error = f"{type(exc).__name__}: {exc}"
        attach_trajectory(exc, traj)
        raise
    finally:
        traj.params["guidance"] = traj.guidances + traj.params["guidance_plan"][len(traj):]
        control = traj.params.get("control")
        if control is not None:  # the control scales used (0 for a parent's steps without control), then the plan
            control["scale"] = scales_used(control, traj.steps)


def distilled_params(pipeline: str) -> dict:
    """What a run of a model that takes guidance as an input says it lacks, and why."""
    return {"capabilities": dict(DISTILLED), "capabilities_reason": distilled_reason(pipeline)}


def attach_trajectory(exc: BaseException, traj: Trajectory) -> None:
    """Hand the steps a failed run made to whoever catches its error: `exc.trajectory` (with a note
    that says so under the traceback). Without it a run whose on_step raised at step 3 kept its
    steps where no one could reach them."""
    if getattr(exc, "trajectory", None) is not None:
        return  # a branch inside a branch: the innermost run's steps are the ones made
    try:
        exc.trajectory = traj
    except (AttributeError, TypeError):  # an exception class with __slots__: the note cannot point anywhere
        return
    exc.add_note(f"nbdiffuse: the {len(traj)} step(s) this run made are kept in this error's .trajectory")


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
