"""What a .nbd file may hold: every field of its metadata and every tensor, with types and bounds,
checked before anything is built from it (trajfile.load_trajectory calls check_file first).

A trajectory file is data from anywhere (a workshop's shared folder, a download): the container
(safetensors, JSON) was always checked, and now its contents are too. Each refusal is a
TrajectoryFileError (a ValueError) naming the file, the field, the value (shortened) and what is
allowed. Bounds are the ones the API itself takes (core/validate.py: steps, seed, sides, guidance),
so a file can hold nothing a call could not have made. Beyond those:

- scheduler_config: num_train_timesteps at most MAX_TRAIN_TIMESTEPS (100 000). A scheduler
  allocates several arrays of that length (betas, alphas, sigmas); 10**9 asked for 4 GB each and
  10**10 for 40 GB. Every released model uses 1000; 100 000 costs under 1 MB. Other integers of
  the config within +-MAX_CONFIG_INT (the largest nbdiffuse records is max_image_seq_len 4096),
  numbers finite, lists at most MAX_TRAIN_TIMESTEPS long (trained_betas), and the config must build
  its scheduler class (only for runs that can branch: the others never rebuild it).
- every step tensor has the shape of initial_latents without its batch row, in a floating dtype;
  tensors are only the ones a trajectory writes (frame tensors are checked by saved_frames.unpack).
- ids are short words (letters, digits, - and _); a run is not its own parent. Runs that are each
  other's parents across files are refused where several files are opened (check_lineage).

The checks of one field are core/nbd_fields.py's; a ControlNet run's settings and pictures (one per
ControlNet of a Multi-ControlNet run) core/nbd_control.py's.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import torch

from .attention import LAYERS
from .capabilities import CAPABILITIES
from .nbd_control import MAX_CONTROLNETS, check_control, check_control_image
from .pag import MAX_ADAPTIVE, MAX_PAG_SCALE
from .nbd_fields import FieldError, as_dict, as_int, as_list, as_number, as_text, finite_json
from .schedulers import scheduler_from_params
from .validate import MAX_SEED, MAX_SIDE, MAX_STEPS, check_control_scale, check_guidance_value, show_value

MAX_TRAIN_TIMESTEPS = 100_000
MAX_CONFIG_INT = 100_000
MAX_EXTRA_OUTPUTS = 8  # guided outputs of a higher-order sampler's extra evaluations per step
MAX_NOTICES = 1000
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STEP_TENSOR = re.compile(r"steps\.(0|[1-9][0-9]{0,8})\."
                          r"(latents|pred_x0|eps_cond|eps_uncond|eps_perturbed|attention|extra\.(0|[1-9][0-9]?))")
_REQUIRED = ("id", "prompt", "negative_prompt", "seed", "steps", "scheduler", "scheduler_class", "scheduler_config",
             "height", "width", "guidance")
_TEXT_FIELDS = ("model", "pipeline", "family", "guidance_kind", "prediction_type", "dtype", "device", "created",
                "encoded_prompt", "encoded_negative_prompt", "capabilities_reason", "scheduler")
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class TrajectoryFileError(ValueError):
    """A file that is not a readable nbdiffuse trajectory."""


def check_file(header: dict, tensors: dict[str, torch.Tensor], path: Any) -> None:
    """Refuse (TrajectoryFileError) a file whose metadata or tensors fall outside the format."""
    where = f"path {show_value(str(path))}"
    try:
        meta = json.loads(header["meta"])
    except KeyError:
        raise TrajectoryFileError(f"{where} has no 'meta' entry: not an nbdiffuse trajectory") from None
    except (ValueError, RecursionError) as exc:  # not JSON, a number of 5000 digits, nested too deep
        raise TrajectoryFileError(f"{where} is a corrupt nbdiffuse trajectory: its meta is not JSON "
                                  f"({type(exc).__name__}: {show_value(str(exc))})") from None
    try:
        check_meta(meta, tensors)
    except (ValueError, TypeError) as exc:  # FieldError, or validate's own messages (which name the field)
        raise TrajectoryFileError(f"{where} is not a trajectory nbdiffuse can open: {exc}") from None


def check_meta(meta: Any, tensors: dict[str, torch.Tensor]) -> None:
    as_dict("meta", meta)
    params = as_dict("params", meta.get("params"))
    for key in _REQUIRED:
        if key not in params:
            raise FieldError(f"params.{key}", None, "present (every trajectory file records it)")
    _check_params(params)
    records = as_list("steps", meta.get("steps"), MAX_STEPS)
    total = params["steps"] - (params.get("start_step") or 0)
    if len(records) > total:
        raise FieldError("steps", f"{len(records)} step records", f"at most params.steps - start_step = {total}")
    for k, record in enumerate(records):
        _check_step(f"steps[{k}]", record, k)
    if not isinstance(meta.get("stopped"), bool):
        raise FieldError("stopped", meta.get("stopped"), "true or false")
    as_text("error", meta.get("error"), none=True)
    if meta.get("branched_at") is not None:
        as_int("branched_at", meta["branched_at"], 0, max(len(records) - 1, 0))
    _check_tensors(tensors, records, params)
    if params.get("output_shape") is not None:
        _check_output_shape(params["output_shape"], tensors["initial_latents"], "output" in tensors)
    if meta.get("approx") is not None:
        _check_approx(meta["approx"], tensors["initial_latents"])
    if meta.get("frames") is not None:
        as_dict("frames", meta["frames"])  # its entries: saved_frames.unpack


def _check_params(p: dict) -> None:
    for key, value in p.items():
        # diffusers' own scheduler defaults hold infinities (DPMSolverMultistepScheduler's lambda_min_clipped
        # is -inf): a scheduler config may hold +-inf, never NaN
        finite_json(f"params.{key}", value, infinite=key == "scheduler_config")
    for key in ("id", "parent"):
        if p.get(key) is not None or key == "id":
            if not isinstance(p.get(key), str) or not _ID.fullmatch(p[key]):
                raise FieldError(f"params.{key}", p.get(key), "a run id: 1 to 64 letters, digits, '-' or '_'"
                                 + (" (or null)" if key == "parent" else ""))
    if p.get("parent") == p["id"]:
        raise FieldError("params.parent", p["parent"], "another run's id (a run cannot be its own parent)")
    as_text("params.prompt", p["prompt"])
    as_text("params.negative_prompt", p["negative_prompt"], none=True)
    for key in _TEXT_FIELDS:
        as_text(f"params.{key}", p.get(key), none=True)
    as_int("params.seed", p["seed"], 0, MAX_SEED)
    as_int("params.steps", p["steps"], 1, MAX_STEPS)
    if p.get("start_step") is not None:
        as_int("params.start_step", p["start_step"], 0, p["steps"] - 1)
    if p.get("branched_at") is not None:
        as_int("params.branched_at", p["branched_at"], 0, p["steps"] - 1)
    for key in ("height", "width"):
        as_int(f"params.{key}", p[key], 1, MAX_SIDE)
    for key in ("guidance", "guidance_plan"):
        if key in p:
            values = as_list(f"params.{key}", p[key], MAX_STEPS, at_least=1)
            for k, value in enumerate(values):
                check_guidance_value(value, f"field params.{key}[{k}]")
    if p.get("strength") is not None:
        as_number("params.strength", p["strength"], 0.0, 1.0, "a number in (0, 1]")
        if p["strength"] <= 0:
            raise FieldError("params.strength", p["strength"], "a number in (0, 1]")
    if p.get("image") is not None:
        image = as_dict("params.image", p["image"])
        for key in ("width", "height"):
            as_int(f"params.image.{key}", image.get(key), 1, MAX_SIDE)
    if p.get("mask") is not None:  # an inpainting run's mask (core/inpaint.py record)
        mask = as_dict("params.mask", p["mask"])
        for key in ("width", "height"):
            as_int(f"params.mask.{key}", mask.get(key), 1, MAX_SIDE)
        as_number("params.mask.share", mask.get("share"), 0.0, 1.0, "the share of the picture it repaints,")
    notices = as_list("params.notices", p.get("notices", []), MAX_NOTICES)
    for k, notice in enumerate(notices):
        as_text(f"params.notices[{k}]", notice)
    if p.get("capabilities") is not None:
        for key, value in as_dict("params.capabilities", p["capabilities"]).items():
            if key not in CAPABILITIES or not isinstance(value, bool):
                raise FieldError(f"params.capabilities.{key}", value,
                                 f"true or false, for one of {', '.join(CAPABILITIES)}")
    if p.get("versions") is not None:
        as_dict("params.versions", p["versions"])
    if p.get("attention") is not None:
        _check_attention_words(as_dict("params.attention", p["attention"]))
    if p.get("lora") is not None:
        _check_lora(as_dict("params.lora", p["lora"]))
    if p.get("control") is not None:
        check_control(as_dict("params.control", p["control"]))
    if p.get("pag") is not None:
        _check_pag(as_dict("params.pag", p["pag"]))
    _check_scheduler(p)


def _check_pag(pag: dict) -> None:
    """A PAG run's settings (core/pag.py PagPlan.params)."""
    as_number("params.pag.scale", pag.get("scale"), 0.0, MAX_PAG_SCALE, "a number")
    as_number("params.pag.adaptive_scale", pag.get("adaptive_scale"), 0.0, MAX_ADAPTIVE, "a number")
    for j, layer in enumerate(as_list("params.pag.layers", pag.get("layers"), 256)):
        as_text(f"params.pag.layers[{j}]", layer, limit=200)
    if pag.get("scales") is not None:  # the pag_scale asked at each step (files before live PAG: none)
        for k, value in enumerate(as_list("params.pag.scales", pag["scales"], MAX_STEPS)):
            as_number(f"params.pag.scales[{k}]", value, 0.0, MAX_PAG_SCALE, "a number")


def _check_lora(lora: dict) -> None:
    """What loading.lora_params records (a run's notices and the run tree put it in words)."""
    for key in ("source", "file"):
        as_text(f"params.lora.{key}", lora.get(key), none=True)
    if lora.get("scale") is not None:
        as_number("params.lora.scale", lora["scale"], -1e6, 1e6, "a finite number (or null)")
    for key in ("components", "adapters"):
        for k, item in enumerate(as_list(f"params.lora.{key}", lora.get(key, []), 1000)):
            as_text(f"params.lora.{key}[{k}]", item)


def _check_scheduler(p: dict) -> None:
    name = p["scheduler_class"]
    if not isinstance(name, str) or not name.isidentifier() or len(name) > 100:
        raise FieldError("params.scheduler_class", name, "the class name of a diffusers scheduler")
    config = as_dict("params.scheduler_config", p["scheduler_config"])
    if "num_train_timesteps" in config:
        as_int("params.scheduler_config.num_train_timesteps", config["num_train_timesteps"], 1, MAX_TRAIN_TIMESTEPS)
    _config_values("params.scheduler_config", config, 0)
    branches = (p.get("capabilities") or {}).get("branch", True)  # x_t-only runs never read or rebuild it
    for field, kind in (("params.prediction_type", p.get("prediction_type")),
                        ("params.scheduler_config.prediction_type", config.get("prediction_type"))):
        if kind is not None and kind not in PREDICTION_TYPES and not name.startswith("FlowMatch") and (
                branches or not isinstance(kind, str) or len(kind) > 100):
            raise FieldError(field, kind, f"one of {', '.join(PREDICTION_TYPES)} (what core/prediction.py reads)")
    if branches:  # a run that can branch rebuilds it: it must build
        try:
            scheduler_from_params(name, config)
        except Exception as exc:  # diffusers refuses a value (a beta_schedule it lacks...) its own way
            raise FieldError("params.scheduler_config", config,
                             f"a config {name} accepts ({type(exc).__name__}: {show_value(str(exc))})") from None


def _config_values(field: str, value: Any, depth: int) -> None:
    if depth > 4:
        raise FieldError(field, value, "nested at most 4 deep")
    if isinstance(value, dict):
        for key, item in value.items():
            _config_values(f"{field}.{key}", item, depth + 1)
    elif isinstance(value, list):
        as_list(field, value, MAX_TRAIN_TIMESTEPS)
        for k, item in enumerate(value):
            _config_values(f"{field}[{k}]", item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool):
        as_int(field, value, -MAX_CONFIG_INT, MAX_CONFIG_INT)
    elif isinstance(value, str):
        as_text(field, value, limit=200)


def _check_step(field: str, record: Any, k: int) -> None:
    record = as_dict(field, record)
    if record.get("index") != k or isinstance(record.get("index"), bool):
        raise FieldError(f"{field}.index", record.get("index"), f"{k} (its position in the list)")
    for key in ("timestep", "x0_coeff", "xt_scale"):
        as_number(f"{field}.{key}", record.get(key), -1e9, 1e9, "a finite number")
    if record.get("sigma") is not None:
        as_number(f"{field}.sigma", record["sigma"], 0.0, 1e9, "a finite number >= 0 (or null)")
    check_guidance_value(record.get("guidance"), f"field {field}.guidance")
    as_number(f"{field}.seconds", record.get("seconds"), 0.0, 1e9, "a finite number of seconds >= 0")
    as_int(f"{field}.extra_outputs", record.get("extra_outputs"), 0, MAX_EXTRA_OUTPUTS)
    scale = record.get("control_scale")
    if isinstance(scale, list):  # several ControlNets: one per ControlNet
        for j, one in enumerate(as_list(f"{field}.control_scale", scale, MAX_CONTROLNETS, at_least=2)):
            check_control_scale(one, f"field {field}.control_scale[{j}]")
    elif scale is not None:
        check_control_scale(scale, f"field {field}.control_scale")
    if record.get("control_strength") is not None:
        as_number(f"{field}.control_strength", record["control_strength"], 0.0, 1e12, "a finite number >= 0 (or null)")
    if record.get("pag_scale") is not None:
        as_number(f"{field}.pag_scale", record["pag_scale"], 0.0, MAX_PAG_SCALE, "a number (or null)")


def _check_tensors(tensors: dict[str, torch.Tensor], records: list, params: dict) -> None:
    initial = tensors.get("initial_latents")
    if not isinstance(initial, torch.Tensor) or initial.dtype not in _FLOATS:
        raise FieldError("tensor initial_latents", None if initial is None else f"{initial.dtype}",
                         "a floating-point tensor (float32, float16, bfloat16)")
    if initial.numel() == 0:
        if records:
            raise FieldError("tensor initial_latents", "empty", "the first latents of a run that has steps")
        shape = None
    elif initial.ndim < 2 or initial.shape[0] != 1:
        raise FieldError("tensor initial_latents", f"shape {tuple(initial.shape)}", "shape (1, C, h, w) (one batch row)")
    else:
        shape = tuple(initial.shape[1:])
    extras = {k: int(record["extra_outputs"]) for k, record in enumerate(records)}
    for name, tensor in tensors.items():
        if name == "initial_latents" or name.startswith("frames."):
            continue
        if name == "control_image" or name.startswith("control_image."):
            check_control_image(name, tensor, params)
            continue
        if name == "output":
            _check_output(tensor, params, shape, len(records))
            continue
        if name == "mask":
            _check_mask(tensor, params)
            continue
        if name == "start_picture":
            _check_start_picture(tensor, params)
            continue
        match = _STEP_TENSOR.fullmatch(name)
        k = int(match.group(1)) if match else -1
        extra = match.group(3) if match else None
        if not match or k >= len(records) or (extra is not None and int(extra) >= extras[k]):
            raise FieldError(f"tensor {show_value(name)}", "present", "a tensor a trajectory writes: initial_latents, "
                             "output, mask, start_picture, steps.<k>.latents / pred_x0 / eps_cond / eps_uncond / "
                             f"eps_perturbed / attention / extra.<j> for its {len(records)} steps, or frames.<k>.<view>")
        if match.group(2) == "attention":
            _check_attention_tensor(name, tensor, params, shape)
        elif tensor.dtype not in _FLOATS or tuple(tensor.shape) != shape:
            raise FieldError(f"tensor {name}", f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                             f"a floating-point tensor of shape {shape} (initial_latents without its batch row)")


def _check_mask(tensor: torch.Tensor, params: dict) -> None:
    """An inpainting run's mask: uint8, of the size its params record (params.mask, core/inpaint.py)."""
    record = params.get("mask")
    if not isinstance(record, dict):
        raise FieldError("tensor mask", "present", "absent: only an inpainting run (params.mask) has a mask")
    want = (record["height"], record["width"])
    if tensor.dtype != torch.uint8 or tuple(tensor.shape) != want:
        raise FieldError("tensor mask", f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                         f"a uint8 tensor of shape {want} (params.mask's height and width)")


def _check_start_picture(tensor: torch.Tensor, params: dict) -> None:
    """An image-to-image or inpainting run's start picture: uint8 RGB of the size params.image records, the very
    picture it fingerprints (core/img2img.py fingerprint)."""
    record = params.get("image")
    if not isinstance(record, dict):
        raise FieldError("tensor start_picture", "present", "absent: only a run from a picture (params.image) has one")
    want = (record["height"], record["width"], 3)
    if tensor.dtype != torch.uint8 or tuple(tensor.shape) != want:
        raise FieldError("tensor start_picture", f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                         f"a uint8 tensor of shape {want} (params.image's height and width, RGB)")
    if record.get("sha256") is not None and \
            hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16] != record["sha256"]:
        raise FieldError("tensor start_picture", "another picture", f"the picture params.image fingerprints "
                         f"(sha256 {show_value(record['sha256'])})")


MAX_OUTPUT_RATIO = 64  # elements of a pipeline's output per element of its steps' latents (Klein's: 1)


def _check_output(tensor: torch.Tensor, params: dict, shape: tuple | None, steps: int) -> None:
    """What pipe(...) returned where it is not the last step's latents (Trajectory.output): a float tensor of
    1 to 5 dimensions, at most MAX_OUTPUT_RATIO times the size of a step's latents, of a run that has steps."""
    if shape is None or not steps:
        raise FieldError("tensor output", "present", "absent: a run without steps returned nothing")
    limit = MAX_OUTPUT_RATIO * math.prod(shape)
    if tensor.dtype not in _FLOATS or not 1 <= tensor.ndim <= 5 or tensor.numel() > limit:
        raise FieldError("tensor output", f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                         f"a floating-point tensor of 1 to 5 dimensions and at most {limit} elements (what the "
                         "pipeline returned)")


def _check_output_shape(value: Any, initial: torch.Tensor, has_output: bool) -> None:
    """The shape pipe(...) returned its last step's latents in (Cosmos 2: without the frame axis): as many
    elements as a step's latents, and only where the file holds no tensor output."""
    dims = as_list("params.output_shape", value, 5, at_least=1)
    for k, n in enumerate(dims):
        as_int(f"params.output_shape[{k}]", n, 1, MAX_CONFIG_INT)
    want = math.prod(initial.shape[1:]) if initial.ndim >= 2 else None
    if has_output or want is None or math.prod(dims) != want:
        raise FieldError("params.output_shape", value, f"a shape of {want} elements (a step's latents), in a "
                         "file without a tensor output")


def _check_attention_tensor(name: str, tensor: torch.Tensor, params: dict, shape: tuple | None) -> None:
    """A step's attention maps: one row per prompt token (params.attention.rows) over the latent grid."""
    known = params.get("attention")
    if not known:
        raise FieldError(f"tensor {name}", "present", "absent: params.attention (the words it maps) is not there")
    want = (len(known["rows"]), *(shape[-2:] if shape else ()))
    if tensor.dtype not in _FLOATS or tuple(tensor.shape) != want:
        raise FieldError(f"tensor {name}", f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                         f"a floating-point tensor of shape {want} (a row per prompt token over the latent grid)")


MAX_PROMPT_TOKENS = 512  # rows of a step's attention maps: every text encoder nbdiffuse knows reads fewer


def _check_attention_words(known: dict) -> None:
    words = as_list("params.attention.words", known.get("words"), MAX_PROMPT_TOKENS, at_least=1)
    for i, word in enumerate(words):
        as_text(f"params.attention.words[{i}]", word)
    rows = as_list("params.attention.rows", known.get("rows"), MAX_PROMPT_TOKENS, at_least=1)
    for i, row in enumerate(rows):
        as_int(f"params.attention.rows[{i}]", row, 0, len(words) - 1)
    if known.get("layers", "all") not in LAYERS:
        raise FieldError("params.attention.layers", known["layers"], " or ".join(map(repr, LAYERS)))


def _check_approx(approx: Any, initial: torch.Tensor) -> None:
    approx = as_dict("approx", approx)
    kernel = approx.get("kernel", 1)
    if kernel not in (1, 3) or isinstance(kernel, bool):
        raise FieldError("approx.kernel", kernel, "1 or 3")
    rows = approx.get("hidden_weight") if approx.get("hidden_weight") is not None else approx.get("weight")
    if not isinstance(rows, list):
        raise FieldError("approx.weight", rows, "a list of rows of numbers")
    channels = int(initial.shape[1]) if initial.ndim == 4 else None
    if channels is not None and len(rows) != kernel * kernel * channels:
        raise FieldError("approx.weight", f"{len(rows)} rows", f"{kernel * kernel * channels} rows "
                         f"(kernel {kernel} x {kernel} x {channels} latent channels)")
    finite_json("approx", approx)


def check_lineage(runs: list) -> None:
    """Runs opened together: ids unique and no run its own ancestor (a cycle would hide them all from the run tree)."""
    by_id: dict[str, Any] = {}
    for traj in runs:
        if traj.id in by_id and by_id[traj.id] is not traj:
            raise ValueError(f"paths: two runs have the id {traj.id!r} (the same file twice?); each run must "
                             "be opened once")
        by_id[traj.id] = traj
    for traj in runs:
        seen, node = [traj.id], traj
        while node.params.get("parent") in by_id:
            node = by_id[node.params["parent"]]
            if node.id in seen:
                raise ValueError(f"paths: runs {' -> '.join(map(repr, seen + [node.id]))} are each other's parents "
                                 "(a cycle); allowed: a tree, each run branched from an earlier one")
            seen.append(node.id)
