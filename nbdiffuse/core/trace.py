"""trace() and prepare(): check a run's arguments and dispatch it (the loop itself is core/run.py).

A pipeline of a known family runs nbdiffuse's own loop (run.Run), which records x0, the
(cond, uncond) pair and guidance per step; any other pipeline whose __call__ takes
callback_on_step_end runs its own loop, watched (generic.GenericRun). Setting diffusers'
`_guidance_scale` from a callback cannot do what the own loop does: crossing 1.0 changes the
batch size mid-run and crashes.
"""
from __future__ import annotations

from typing import Any, Callable

from . import img2img
from .control import RunControl
from .controlnet import ControlStep, control_size, plan_control
from .attention import AttentionRecorder, prompt_words
from .families import family_for, is_generic
from .generic import prepare_generic
from .run import Run
from .run_args import check_run_args
from .schedulers import make_scheduler
from .step import Step
from .trajectory import Trajectory
from .validate import check_size, guidance_schedule

OnStep = Callable[[Trajectory, Step], None]


def trace(pipe: Any, prompt: str, negative_prompt: str | None = "", steps: int = 30, guidance: Any = 7.5,
          seed: int = 0, scheduler: Any = None, height: int | None = None, width: int | None = None,
          control: RunControl | None = None, on_step: OnStep | None = None, image: Any = None,
          strength: float | None = None, attention: bool = False, control_image: Any = None, control_scale: Any = 1.0,
          control_start: float = 0.0, control_end: float = 1.0) -> Trajectory:
    """Run `pipe` on `prompt` step by step and return the recorded Trajectory.

    guidance: a number, a sequence of one number per step that runs, or a callable step -> number.
    control: a RunControl to change guidance, pause, step or stop from another thread.
    on_step: called as on_step(trajectory, step) after each step, in the running thread.
    image, strength: image to image (a PIL image, uint8 array or file path): the picture, noised
    to the level where the last int(steps * strength) steps begin (default strength 0.8), is
    denoised from there (diffusers' img2img semantics). Without `height`/`width` the run takes
    the picture's size (rounded down to what the model takes); otherwise the picture is resized.
    attention: also record, at every step, each prompt token's cross-attention on the latent grid
    (traj.tokens, traj.attention(k, word); core/attention.py). The run itself is bit for bit the same.
    control_image: a ControlNet pipeline's control picture (PIL image, uint8 array or file path; without
    height/width the run takes its size). control_scale: how strongly it steers (0 to 10; a number, one
    per step that runs, or a callable step -> number; RunControl.set_control_scale changes it live);
    control_start, control_end: the share of the run where it acts (core/controlnet.py). The same
    numbers as pipe(..., image=control_image, controlnet_conditioning_scale=control_scale,
    control_guidance_start=control_start, control_guidance_end=control_end).
    """
    run = prepare(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance, seed=seed,
                  scheduler=scheduler, height=height, width=width, control=control, on_step=on_step, image=image,
                  strength=strength, attention=attention, control_image=control_image, control_scale=control_scale,
                  control_start=control_start, control_end=control_end)
    return run.execute()


def prepare(pipe: Any, prompt: str, negative_prompt: str | None = "", steps: int = 30, guidance: Any = 7.5,
            seed: int = 0, scheduler: Any = None, height: int | None = None, width: int | None = None,
            control: RunControl | None = None, on_step: OnStep | None = None, image: Any = None,
            strength: float | None = None, attention: bool = False, control_image: Any = None,
            control_scale: Any = 1.0, control_start: float = 0.0, control_end: float = 1.0) -> "Run":
    """Check every argument and build the run without touching the model (trace() = prepare().execute()).

    A pipeline outside the known families whose __call__ takes callback_on_step_end runs on the
    generic path (core/generic.py): x_t every step, stop and pause, no x0 / what-if / branch.
    """
    if not isinstance(attention, bool):
        raise TypeError(f"attention must be True or False, got {attention!r}")
    if is_generic(pipe):
        if attention:
            raise ValueError(f"attention=True needs a known model family (its cross-attention layers); "
                             f"{type(pipe).__name__} runs on the generic path, which sees x_t only")
        if control_image is not None:
            raise ValueError(f"control_image needs nbdiffuse's own loop (StableDiffusionControlNetPipeline, "
                             f"StableDiffusionXLControlNetPipeline); {type(pipe).__name__} runs on the generic path, "
                             "which sees x_t only")
        plan_control(pipe, None, control_scale, control_start, control_end, 1)  # no control settings without it
        return prepare_generic(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance,
                               seed=seed, scheduler=scheduler, height=height, width=width, control=control,
                               on_step=on_step, image=image, strength=strength)
    family = family_for(pipe)
    prompt, negative_prompt, steps, seed, control, on_step = check_run_args(prompt, negative_prompt, steps, seed,
                                                                            control, on_step)
    start = 0
    if image is not None:
        image = img2img.check_image(image)
        strength = img2img.check_strength(img2img.DEFAULT_STRENGTH if strength is None else strength)
        start = img2img.start_step(steps, strength)
    elif strength is not None:
        raise ValueError(f"strength={strength!r} needs an image: pass image=... (a PIL image, array or file path)")
    schedule = guidance_schedule(guidance, steps - start)
    control_plan = plan_control(pipe, control_image, control_scale, control_start, control_end, steps - start)
    factor = family.vae_factor
    default_h, default_w = control_size(control_plan, factor) or family.default_size()
    if image is not None:  # the picture's own size, as diffusers' img2img pipelines take it
        default_h, default_w = max(factor, image.height // factor * factor), max(factor, image.width // factor * factor)
    height = default_h if height is None else check_size("height", height, family.vae_factor)
    width = default_w if width is None else check_size("width", width, family.vae_factor)
    sched = make_scheduler(pipe, scheduler)
    run = Run(pipe, family, sched, prompt, negative_prompt, steps, schedule, seed, height, width, control, on_step)
    run.image, run.strength, run.start = image, strength, start
    if control_plan is not None:
        run.controlnet = ControlStep(control_plan, family, height, width, control)
        run.controlnet.first = start * int(getattr(sched, "order", 1))
    run.check_prompts()
    if attention:
        record_attention(run, height // family.vae_factor, width // family.vae_factor)
    return run


def record_attention(run: Run, h: int, w: int) -> None:
    """Give `run` an AttentionRecorder for the prompt's tokens as its text encoder reads them."""
    words, positions = prompt_words(run.pipe.tokenizer, run.encoded[0])
    denoiser = getattr(run.pipe, "unet", None) or getattr(run.pipe, "transformer", None)
    run.attention = AttentionRecorder(denoiser, [p for ps in positions for p in ps], (h, w))
    run.attention_words = {"words": words, "rows": [i for i, ps in enumerate(positions) for _ in ps]}
