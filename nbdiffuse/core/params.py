"""RunParams: every key of `traj.params`, what it holds and who writes it.

A trajectory's params stay a plain dict (JSON in the .nbd file, unchanged by this module): the
TypedDict only documents the keys and lets annotations say which dict is meant. run.Run.params()
writes all keys but the last three (the first two for distilled runs); the generic path (core/generic.py) adds them; branch.py
rewrites parent, branched_at, steps, guidance and, on the parent's schedule, scheduler and start_step.
Files saved by older versions may lack keys added since: readers use params.get() for
start_step, strength, image, lora, notices and capabilities.
"""
from __future__ import annotations

from typing import Any, TypedDict


class Versions(TypedDict):
    nbdiffuse: str
    diffusers: str
    torch: str
    transformers: str


class _EveryRun(TypedDict):
    id: str  # 12 hex digits, unique per run (trajectory.id)
    model: str  # the model's display name (pipe_attrs.model_name): where it was loaded from
    pipeline: str  # the diffusers pipeline class, e.g. "StableDiffusionPipeline"
    lora: dict | None  # the LoRA and scale the run used (lora.lora_params), or None
    family: str  # the adapter's name (families): "stable-diffusion", "flux", ..., "generic"
    guidance_kind: str  # "cfg", "distilled" (a model input: no what-if) or "pipeline" (generic)
    prompt: str  # as typed
    negative_prompt: str  # as typed ("" for none)
    seed: int
    steps: int  # steps of the schedule (image to image runs only the last steps - start_step)
    scheduler: str  # nbdiffuse's name of the sampler (schedulers.scheduler_name)
    scheduler_class: str  # the diffusers class, to rebuild it (schedulers.scheduler_from_params)
    scheduler_config: dict[str, Any]  # its config, JSON-safe
    prediction_type: str  # "epsilon", "v_prediction", "flow_prediction", ...
    encoded_prompt: str  # what the text encoder read (shapes grammar: unknown words dropped)
    encoded_negative_prompt: str
    notices: list[str]  # what the run changed about its input (truncation, unknown words, ...)
    guidance: list[float]  # used at each step made, then the plan for steps never made
    guidance_plan: list[float]  # the schedule asked for, one value per step that runs
    start_step: int  # first step of the schedule that ran (0; image to image starts later)
    strength: float | None  # image to image: the share of the schedule that ran, else None
    image: str | None  # image to image, inpainting: the start picture's fingerprint (img2img.fingerprint; the picture
    # itself is traj.start_picture), else None
    height: int
    width: int
    dtype: str  # e.g. "float32"
    device: str  # e.g. "cpu", "cuda:0"
    versions: Versions
    created: str  # ISO 8601, UTC, seconds
    parent: str | None  # id of the run this one branched from
    branched_at: int | None  # the parent's step it continued after


class AttentionWords(TypedDict):
    words: list[str]  # the prompt's words as the tokenizer split them (attention.prompt_words)
    rows: list[int]  # for each row of a step's attention maps (one per prompt token), the index of its word
    layers: str  # which layers the maps average (attention.LAYERS); absent in files from before the choice: "all"


class ControlSettings(TypedDict, total=False):
    """A ControlNet run's control (core/controlnet.py, ControlPlan.params). A run of several ControlNets
    (a MultiControlNetModel) has "nets" (their number), and model, image, start and end hold a list of one
    per ControlNet, scale and scale_plan a list per step of one per ControlNet."""
    nets: int  # several ControlNets only: how many
    model: str  # the ControlNet: its folder or hub id, "outline" for the embedded model's
    image: dict  # the control picture's fingerprint (img2img.fingerprint); the picture is traj.control_image
    scale: list[float]  # the control scale asked at each step made, then the plan for steps never made
    scale_plan: list[float]  # the control_scale schedule asked for, one value per step that runs
    start: float  # control_start: the share of the run before the ControlNet acts
    end: float  # control_end: the share of the run after which it no longer acts
    guess_mode: bool  # control_guess_mode: diffusers' guess mode (on for a ControlNet with global_pool_conditions)
    mode: int | list  # control_mode, a union ControlNet's kind of picture (None for one of one kind); only there


class PagSettings(TypedDict):
    """A PAG pipeline's run (core/pag.py, PagPlan.params)."""
    scale: float  # pag_scale, as the run began (a branch: as its own steps began)
    adaptive_scale: float  # pag_adaptive_scale (0: pag_scale at every step)
    layers: list[str]  # the pipeline's pag_applied_layers: the self-attention layers perturbed
    scales: list[float]  # the pag_scale asked at each step made (live changes too), then the plan for steps never made


class RunParams(_EveryRun, total=False):
    """traj.params; the keys above are in every run's; attention in runs traced with attention=True;
    walk in the runs inside a sweep's seed or prompt walk (core/walks.py); control in runs with a control
    picture; capabilities and capabilities_reason in runs of the generic path and of models that take
    guidance as an input (guidance_kind "distilled"); pipe_kwargs in generic runs given some; pag in the runs of
    PAG pipelines; mask in inpainting runs."""
    attention: AttentionWords
    walk: dict  # {"seed": {"from", "to", "t"}, "prompt": {"from", "to", "t"}}: the walk(s) the run is a point of
    control: ControlSettings
    pag: PagSettings
    mask: dict  # inpainting: the mask's width, height, sha256 and the share it repaints (inpaint.record)
    capabilities: dict[str, bool]  # what they lack (capabilities.XT_ONLY and "previews", or DISTILLED)
    capabilities_reason: str  # why, in one line
    pipe_kwargs: dict[str, Any]  # the pipeline's own keywords passed to pipe(...) (pipe_kwargs.recorded)
