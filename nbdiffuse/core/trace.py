"""trace() and prepare(): check a run's arguments and dispatch it (the loop itself is core/run.py).

A pipeline of a known family runs nbdiffuse's own loop (run.Run), which records x0, the
(cond, uncond) pair and guidance per step; any other pipeline whose __call__ takes
callback_on_step_end runs its own loop, watched (generic.GenericRun). Setting diffusers'
`_guidance_scale` from a callback cannot do what the own loop does: crossing 1.0 changes the
batch size mid-run and crashes.
"""
from __future__ import annotations

from typing import Any, Callable

from . import img2img, inpaint
from .control import RunControl
from .attention import LAYERS, AttentionRecorder, prompt_columns
from .controlnet import ControlStep, control_size, plan_control
from .families import adapter_for, is_generic
from .families.base import denoiser_of
from .generic import prepare_generic
from .generic_control import own_loop_asked
from .pag import plan_pag
from .pipe_kwargs import check_for_family, check_pipe_kwargs
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
          strength: float | None = None, attention: bool | str = False, pipe_kwargs: dict | None = None,
          control_image: Any = None, control_scale: Any = None, control_start: float = 0.0,
          control_end: float = 1.0, control_guess_mode: bool = False, control_mode: Any = None,
          mask_image: Any = None) -> Trajectory:
    """Run `pipe` on `prompt` step by step and return the recorded Trajectory.

    guidance: a number, a sequence of one number per step that runs, or a callable step -> number.
    control: a RunControl to change guidance, pause, step or stop from another thread.
    on_step: called as on_step(trajectory, step) after each step, in the running thread.
    image, strength: image to image (a PIL image, uint8 array or file path): the picture, noised
    to the level where the last int(steps * strength) steps begin (default strength 0.8, or an
    image-to-image pipeline's own), is denoised from there (diffusers' img2img semantics). Without
    `height`/`width` the run takes the picture's size (rounded down to what the model takes; an
    image-to-image class whose __call__ takes a height: its usual size); otherwise the picture is resized.
    Image-to-image pipeline classes (StableDiffusionImg2ImgPipeline, SDXL's, Flux's) need an image.
    attention: also record, at every step, each prompt token's cross-attention on the latent grid
    (traj.tokens, traj.attention(k, word); core/attention.py). The run itself is bit for bit the same.
    A UNet's maps average its decoder's layers; attention="all" averages every cross-attention layer.
    pipe_kwargs: the pipeline's own keywords (e.g. {"use_resolution_binning": True}): passed to pipe(...) on
    the generic path; a family's loop refuses those it does not honour, by name (core/pipe_kwargs.py). A PAG
    pipeline the families run takes its pag_scale and pag_adaptive_scale there (core/pag.py).
    control_image: a ControlNet pipeline's control picture (PIL image, uint8 array or file path; without
    height/width an SD or SDXL run takes its size, as their pipelines do; SD3's and Flux's take their usual
    size, as theirs do). control_scale: how strongly it steers (0 to 10; a number, one
    per step that runs, or a callable step -> number; RunControl.set_control_scale changes it live; None:
    the pipeline's own default, 1 for SD's and SDXL's ControlNet pipelines, 0.8 for their image-to-image ones);
    control_start, control_end: the share of the run where it acts (core/controlnet.py).
    control_guess_mode: diffusers' guess mode (the ControlNet reads the prompt's row only, its residuals
    scaled from 0.1 to 1 down the blocks; on for a ControlNet with global_pool_conditions). The same
    numbers as pipe(..., image=control_image, controlnet_conditioning_scale=control_scale,
    control_guidance_start=control_start, control_guidance_end=control_end, guess_mode=control_guess_mode).
    control_mode: a union ControlNet's kind of picture, a number (diffusers' control_mode; one per ControlNet
    for several; core/control_mode.py); None for a ControlNet of one kind.
    mask_image: an inpainting pipeline's mask (PIL image, array or file path, the start picture's size): the model
    repaints where it is white and keeps the picture where it is black (core/inpaint.py); with image and strength.
    """
    run = prepare(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance, seed=seed,
                  scheduler=scheduler, height=height, width=width, control=control, on_step=on_step, image=image,
                  strength=strength, attention=attention, pipe_kwargs=pipe_kwargs, control_image=control_image,
                  control_scale=control_scale, control_start=control_start, control_end=control_end,
                  control_guess_mode=control_guess_mode, control_mode=control_mode, mask_image=mask_image)
    return run.execute()


def prepare(pipe: Any, prompt: str, negative_prompt: str | None = "", steps: int = 30, guidance: Any = 7.5,
            seed: int = 0, scheduler: Any = None, height: int | None = None, width: int | None = None,
            control: RunControl | None = None, on_step: OnStep | None = None, image: Any = None,
            strength: float | None = None, attention: bool | str = False, pipe_kwargs: dict | None = None,
            control_image: Any = None, control_scale: Any = None, control_start: float = 0.0,
            control_end: float = 1.0, control_guess_mode: bool = False, control_mode: Any = None,
            mask_image: Any = None) -> "Run":
    """Check every argument and build the run without touching the model (trace() = prepare().execute()).

    A pipeline outside the known families whose __call__ takes callback_on_step_end runs on the
    generic path (core/generic.py): x_t and x0 (read from its sampler) every step, stop and pause, no what-if
    or branch; so does a union ControlNet pipeline given several pictures for one ControlNet through pipe_kwargs
    (own_loop_asked), and every inpainting pipeline but SD's, SDXL's, SD3's and Flux's (and their ControlNet ones, SD's
    and SDXL's PAG ones, Flux Fill: core/inpaint_loop.py; core/inpaint.py).
    """
    attention = check_attention(attention)
    pipe_kwargs = check_pipe_kwargs(pipe_kwargs)
    if is_generic(pipe) or own_loop_asked(pipe, pipe_kwargs):
        if attention:
            raise ValueError(f"attention=True needs a known model family (its cross-attention layers); "
                             f"{type(pipe).__name__} runs its own loop, which nbdiffuse watches from outside the model")
        # a ControlNet pipeline outside the families: its picture and settings go to pipe(...) (core/generic_control.py)
        return prepare_generic(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance,
                               seed=seed, scheduler=scheduler, height=height, width=width, control=control,
                               on_step=on_step, image=image, strength=strength, pipe_kwargs=pipe_kwargs,
                               mask_image=mask_image,
                               control_args=(control_image, control_scale, control_start, control_end,
                                             control_guess_mode, control_mode))
    family = adapter_for(pipe)  # a family's adapter, or the TypeError that says what runs and why not this
    if mask_image is not None and not inpaint.takes_mask(pipe):  # refused before its picture is looked at
        raise inpaint.not_inpainting(pipe)
    pag, pipe_kwargs = plan_pag(pipe, pipe_kwargs)  # a PAG pipeline's pag_scale and pag_adaptive_scale
    inpaint.check_crop(pipe, pipe_kwargs)  # named first: the family refuses every keyword it does not honour
    check_for_family(pipe, family, pipe_kwargs)
    prompt, negative_prompt, steps, seed, control, on_step = check_run_args(prompt, negative_prompt, steps, seed,
                                                                            control, on_step)
    image, strength, start, (default_h, default_w) = img2img.plan(pipe, family, image, strength, steps)
    mask = inpaint.check_mask(mask_image, image, pipe)  # an inpainting pipeline's (core/inpaint_loop.py runs it)
    schedule = guidance_schedule(guidance, steps - start)
    control_plan = plan_control(pipe, control_image, control_scale, control_start, control_end, steps - start,
                                control_guess_mode, control_mode)
    if image is None and family.control_sets_size:  # the control picture's size, as SD's and SDXL's take it
        default_h, default_w = control_size(control_plan, family.vae_factor) or (default_h, default_w)
    height = default_h if height is None else check_size("height", height, family.vae_factor)
    width = default_w if width is None else check_size("width", width, family.vae_factor)
    sched = make_scheduler(pipe, scheduler)
    run = Run(pipe, family, sched, prompt, negative_prompt, steps, schedule, seed, height, width, control, on_step)
    run.image, run.strength, run.start, run.pag, run.mask = image, strength, start, pag, mask
    if control_plan is not None:
        run.controlnet = ControlStep(control_plan, family, height, width, control, seed)
        run.controlnet.first = start * int(getattr(sched, "order", 1))
    run.check_prompts()
    if attention:
        # the latent grid the run records (Flux: vae_factor counts its 2 x 2 packing, the latents do not)
        latent = getattr(family, "latent_size", None) or (lambda h, w: (h // family.vae_factor, w // family.vae_factor))
        record_attention(run, *latent(height, width), attention)
    return run


def check_attention(attention: Any) -> str | None:
    """trace's attention=: False (none), True (the default layers: a UNet's decoder), or one of LAYERS."""
    if attention is False or attention is None:
        return None
    if attention is True:
        return "decoder"
    if isinstance(attention, str) and attention in LAYERS:
        return attention
    raise (ValueError if isinstance(attention, str) else TypeError)(
        f"attention must be True, False or one of {', '.join(map(repr, LAYERS))} (which layers a UNet's maps "
        f"average), got {attention!r}")


def text_columns(run: Run) -> list[tuple[Any, int, int]]:
    """(tokenizer, offset, length) of each encoder whose tokens are the denoiser's text columns, in order:
    Flux attends to its T5 tokens alone; SD3 to CLIP's 77 and then, with its T5 encoder, T5's 256."""
    pipe = run.pipe
    if run.family.name == "flux":
        return [(pipe.tokenizer_2, 0, int(pipe.tokenizer_2.model_max_length))]
    clip = int(pipe.tokenizer.model_max_length)
    columns = [(pipe.tokenizer, 0, clip)]
    if run.family.name == "stable-diffusion-3":
        columns += [(tokenizer, clip, length) for name, tokenizer, length in run.family.text_readers() if name == "T5"]
    return columns


def record_attention(run: Run, h: int, w: int, layers: str) -> None:
    """Give `run` an AttentionRecorder for the prompt's tokens as its text encoder reads them."""
    words, positions = prompt_columns(text_columns(run), run.encoded[0])
    run.attention = AttentionRecorder(denoiser_of(run.pipe), [p for ps in positions for p in ps], (h, w), layers)
    run.attention_words = {"words": words, "rows": [i for i, ps in enumerate(positions) for _ in ps],
                           "layers": layers}
