"""load_pipeline(): the embedded model, a local diffusers folder, a hub id, or a pipeline object;
optionally with a LoRA (diffusers' load_lora_weights, one adapter named "nbd", scale changeable).

Weights load from safetensors only and never with remote code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .controlnet_loading import check_controlnet_arg, with_controlnet
from .pag_loading import check_pag_arg, with_pag
from .inpaint import with_inpaint
from .decode import ApproxDecoder
from .families.registry import takes_step_callback
from .lora import check_lora_scale, load_lora, set_lora_scale
from .model_source import check_hub_id, local_folder
from .pipe_attrs import lora_info, set_shipped_approx, set_source, set_speaks_shapes, set_tiny, speaks_shapes
from .pipe_decoder import has_decoder
from .sources import EmbeddedModelMissing, PipelineLoadError, short_error
from .sources import HUB_ID
from .tiny_decoder import TinyDecoder

EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "shapes" / "model"
_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}


def resolve_device(device: Any = None) -> torch.device:
    """None or "auto": cuda, else mps, else cpu."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be None, 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is available here; use device=None or 'cpu'")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} but MPS is not available here; use device=None or 'cpu'")
    return resolved


def resolve_dtype(dtype: Any, device: torch.device, pipeline_class: str = "") -> torch.dtype:
    """None: fp16 on a GPU (bf16 for models that need it: Flux, SD3.5), fp32 on the CPU."""
    if dtype is None or dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        if device.type == "cuda" and ("Flux" in pipeline_class or "StableDiffusion3" in pipeline_class):
            return torch.bfloat16
        return torch.float16
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"dtype must be None, 'auto', 'float16', 'bfloat16' or 'float32' (or a torch dtype); got {dtype!r}")


def load_pipeline(source: Any = None, device: Any = None, dtype: Any = None, lora: Any = None,
                  lora_scale: float = 1.0, controlnet: Any = None, pag: Any = None, inpaint: bool = False):
    """A diffusers pipeline ready for nbd.trace and the widgets.

    source: None for the embedded shapes model (CPU-friendly, offline); a local diffusers
    folder; a Hugging Face hub id (downloaded by diffusers, or taken from the local cache
    when offline); or an existing pipeline object, checked and returned as is.
    lora: LoRA weights to add (a .safetensors file, a folder holding one, or a hub id), loaded
    with diffusers' load_lora_weights as the adapter "nbd" (needs peft: pip install "nbdiffuse[lora]").
    A pipeline object gets it loaded into itself, replacing an earlier nbd LoRA. lora_scale
    weighs it (0 is the base model); change it between runs with nbd.set_lora_scale(pipe, scale).
    controlnet: a ControlNet folder, a hub id, a diffusers ControlNet model of a kind the pipeline takes
    (ControlNetModel for SD 1.x/2.x and SDXL, ControlNetUnionModel for SDXL, SD3ControlNetModel,
    FluxControlNetModel), or "outline" (the embedded model's drawable ControlNet), or a list of them of one
    kind (several at once, diffusers' MultiControlNetModel):
    the result is the matching ControlNet pipeline, for nbd.trace(..., control_image=...)
    (core/controlnet_loading.py).
    pag: the layers perturbed-attention guidance perturbs ("mid", "up", "blocks.1", or a list): the result is
    the pipeline's PAG sibling (its ControlNet one with controlnet=...), for pipe_kwargs={"pag_scale": ...}
    (core/pag_loading.py).
    inpaint: True gives the pipeline's inpainting sibling (diffusers' AutoPipelineForInpainting; with
    controlnet or pag, theirs), for nbd.trace(..., image=..., mask_image=...) (core/inpaint.py).
    """
    if controlnet is not None:
        check_controlnet_arg(controlnet)
    layers = check_pag_arg(pag)
    if not isinstance(inpaint, bool):
        raise TypeError(f"inpaint must be True or False, got {inpaint!r}")
    pipe = _load(source, device, dtype, lora, lora_scale)
    pipe = pipe if controlnet is None else with_controlnet(pipe, controlnet)
    pipe = pipe if layers is None else with_pag(pipe, layers)
    return with_inpaint(pipe) if inpaint else pipe


def _load(source: Any, device: Any, dtype: Any, lora: Any, lora_scale: float):
    from diffusers import DiffusionPipeline

    lora_scale = check_lora_scale(lora_scale)
    if lora is not None and not isinstance(lora, (str, os.PathLike)):
        raise TypeError(f"lora must be a .safetensors file, a folder holding one, or a hub id; got {type(lora).__name__}")
    if isinstance(source, DiffusionPipeline):
        _check_pipeline(source)
        if device is not None or dtype is not None:
            target = resolve_device(device) if device is not None else source.device
            source.to(target, resolve_dtype(dtype, target, type(source).__name__) if dtype is not None else None)
        if lora is not None:
            load_lora(source, lora, lora_scale)
        elif lora_scale != 1.0:
            if lora_info(source) is None:
                raise ValueError(f"lora_scale={lora_scale!r} needs a LoRA: pass lora=... (a file, folder or hub id)")
            set_lora_scale(source, lora_scale)
        return source
    if lora is None and lora_scale != 1.0:
        raise ValueError(f"lora_scale={lora_scale!r} needs a LoRA: pass lora=... (a file, folder or hub id)")
    pipe = _load_source(source, device, dtype)
    if lora is not None:
        load_lora(pipe, lora, lora_scale)
    return pipe


def _load_source(source: Any, device: Any, dtype: Any):
    target = resolve_device(device)
    if source is None:
        if not (EMBEDDED_MODEL / "model_index.json").is_file():
            raise EmbeddedModelMissing(
                "the embedded shapes model is not shipped in this installation yet "
                "(no model_index.json under nbdiffuse/shapes/model); pass source= a diffusers folder or hub id, "
                "or train one with `python -m nbdiffuse.shapes.train --out DIR`"
            )
        pipe = _from_pretrained(EMBEDDED_MODEL, "the embedded shapes model", target, dtype, local_only=True)
        set_source(pipe, "nbdiffuse/shapes")
        set_speaks_shapes(pipe, True)
        _attach_shipped_decoders(pipe, EMBEDDED_MODEL)
        _shapes_layout(pipe)
        return pipe
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be None, a folder path, a hub id or a diffusers pipeline; got {type(source).__name__}")
    path = local_folder(source)  # core/model_source.py: the OS's errors become a PipelineLoadError naming source
    if path is not None:
        if not path.is_dir():
            raise PipelineLoadError(f"source={str(source)!r} is a file; expected a diffusers model folder "
                                    "(with model_index.json) or a hub id")
        if not (path / "model_index.json").is_file():
            raise PipelineLoadError(f"source={str(source)!r} is not a diffusers model folder: it has no model_index.json")
        pipe = _from_pretrained(path, str(source), target, dtype, local_only=True)
        # A model trained by nbdiffuse.shapes.train speaks the shapes grammar.
        set_speaks_shapes(pipe, (path / "training.json").is_file() and (path / "tokenizer" / "vocab.json").is_file())
        _attach_shipped_decoders(pipe, path)
        if speaks_shapes(pipe):
            _shapes_layout(pipe)
    else:
        name = str(source)
        check_hub_id(name)
        if not HUB_ID.match(name):
            raise PipelineLoadError(f"source={name!r} is neither an existing folder nor a hub id like 'org/model'")
        pipe = _from_pretrained(name, name, target, dtype, local_only=False)
    set_source(pipe, str(source))
    return pipe


def _from_pretrained(where: Any, label: str, device: torch.device, dtype: Any, local_only: bool):
    from diffusers import DiffusionPipeline

    try:
        config = DiffusionPipeline.load_config(where, local_files_only=local_only)
        torch_dtype = resolve_dtype(dtype, device, config.get("_class_name", ""))
        pipe = DiffusionPipeline.from_pretrained(where, dtype=torch_dtype, use_safetensors=True,
                                                 local_files_only=local_only, trust_remote_code=False)
    except (PipelineLoadError, TypeError):
        raise
    except ValueError as exc:
        if "dtype" in str(exc) and "must be" in str(exc):
            raise
        raise PipelineLoadError(f"could not load {label!r}: {exc}") from exc
    except Exception as exc:  # network, missing files, no safetensors, corrupt weights
        hint = "" if local_only else (
            " If this machine is offline, download the model where there is network "
            f"(`hf download {label}`) and load it from that folder or the local cache (HF_HUB_OFFLINE=1);"
            " check the id's spelling and that the model has safetensors weights.")
        raise PipelineLoadError(f"could not load {label!r}: {type(exc).__name__}: {short_error(exc)}.{hint}") from exc
    _check_pipeline(pipe)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _shapes_layout(pipe: Any) -> None:
    """A shapes model's VAE in channels_last: its small convolutions run ~16% faster on a CPU (a
    64x64 decode, the final frame of every run and every scrub: 18.8 -> 15.8 ms on 1 thread,
    13.7 -> 11.6 ms on 2; the same picture to 5e-6). Its UNet gains nothing (attention at 16x16)."""
    pipe.vae.to(memory_format=torch.channels_last)


APPROX_FILE = "approx_decoder.json"
TINY_FOLDER = "tiny_decoder"  # a TinyDecoder (core/tiny_decoder.py) distilled from the folder's VAE


def _attach_shipped_decoders(pipe: Any, folder: Path) -> None:
    """A model folder may carry its own approx-decoder fit (made on images of its own world) and a
    tiny decoder distilled from its VAE (nbdiffuse.shapes.distil_tiny); both become the pipeline's."""
    path = folder / APPROX_FILE
    if path.is_file():
        try:
            set_shipped_approx(pipe.vae, ApproxDecoder.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError) as exc:
            raise PipelineLoadError(f"{str(path)!r} is not a valid approx decoder: {exc}") from exc
    tiny = folder / TINY_FOLDER
    if (tiny / "config.json").is_file():
        try:
            decoder = TinyDecoder.from_pretrained(tiny, use_safetensors=True, local_files_only=True)
        except Exception as exc:  # a broken or foreign folder: say which, do not load the pipeline half-way
            raise PipelineLoadError(f"{str(tiny)!r} is not a valid tiny decoder: {type(exc).__name__}: "
                                    f"{short_error(exc)}") from exc
        set_tiny_decoder(pipe, decoder)


def _check_pipeline(pipe: Any) -> None:
    missing = [] if getattr(pipe, "scheduler", None) is not None else ["scheduler"]
    if not has_decoder(pipe) and not takes_step_callback(pipe):  # a watched prior may have none (no previews)
        missing.append("vae")
    if all(getattr(pipe, name, None) is None for name in ("unet", "transformer", "decoder", "prior")):
        missing.append("unet or transformer")
    if missing:
        raise PipelineLoadError(f"{type(pipe).__name__} lacks {', '.join(missing)}: not a text-to-image diffusion pipeline")


def set_tiny_decoder(pipe: Any, tiny_vae: Any) -> None:
    """Use a diffusers AutoencoderTiny (TAESD-style) or an nbdiffuse TinyDecoder for decoder='tiny'
    pictures of this pipeline and for the Explorer's frames (its `preview`); None removes it.
    The embedded model comes with a TinyDecoder distilled from its VAE."""
    from diffusers import AutoencoderTiny

    if tiny_vae is None:
        set_tiny(pipe, None)
        return
    if not isinstance(tiny_vae, (AutoencoderTiny, TinyDecoder)):
        raise TypeError(f"tiny_vae must be a diffusers AutoencoderTiny or an nbdiffuse TinyDecoder, "
                        f"got {type(tiny_vae).__name__}")
    param = next(pipe.vae.parameters())
    # torch's own .to: diffusers' ModelMixin.to warns about float32-kept modules on every dtype move,
    # even when a model has none (an empty list), which would show on every load of the embedded model
    set_tiny(pipe, torch.nn.Module.to(tiny_vae, param.device, param.dtype))
