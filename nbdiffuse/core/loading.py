"""load_pipeline(): the embedded model, a local diffusers folder, a hub id, or a pipeline object.

Weights load from safetensors only and never with remote code.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "shapes" / "model"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}


class PipelineLoadError(ValueError):
    """A model could not be loaded; the message says what and how to fix it."""


class EmbeddedModelMissing(PipelineLoadError, FileNotFoundError):
    """The embedded shapes model is not in this installation."""


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


def load_pipeline(source: Any = None, device: Any = None, dtype: Any = None):
    """A diffusers pipeline ready for nbd.trace and the widgets.

    source: None for the embedded shapes model (CPU-friendly, offline); a local diffusers
    folder; a Hugging Face hub id (downloaded by diffusers, or taken from the local cache
    when offline); or an existing pipeline object, checked and returned as is.
    """
    from diffusers import DiffusionPipeline

    if isinstance(source, DiffusionPipeline):
        _check_pipeline(source)
        if device is not None or dtype is not None:
            target = resolve_device(device) if device is not None else source.device
            source.to(target, resolve_dtype(dtype, target, type(source).__name__) if dtype is not None else None)
        return source
    target = resolve_device(device)
    if source is None:
        if not (EMBEDDED_MODEL / "model_index.json").is_file():
            raise EmbeddedModelMissing(
                "the embedded shapes model is not shipped in this installation yet "
                f"(no model_index.json under nbdiffuse/shapes/model); pass source= a diffusers folder or hub id, "
                "or train one with `python -m nbdiffuse.shapes.train --out DIR`"
            )
        pipe = _from_pretrained(EMBEDDED_MODEL, "the embedded shapes model", target, dtype, local_only=True)
        pipe._nbd_source = "nbdiffuse/shapes"
        pipe._nbd_shapes = True
        _attach_shipped_approx(pipe, EMBEDDED_MODEL)
        return pipe
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be None, a folder path, a hub id or a diffusers pipeline; got {type(source).__name__}")
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PipelineLoadError(f"source={str(source)!r} is a file; expected a diffusers model folder "
                                    "(with model_index.json) or a hub id")
        if not (path / "model_index.json").is_file():
            raise PipelineLoadError(f"source={str(source)!r} is not a diffusers model folder: it has no model_index.json")
        pipe = _from_pretrained(path, str(source), target, dtype, local_only=True)
        # A model trained by nbdiffuse.shapes.train speaks the shapes grammar.
        pipe._nbd_shapes = (path / "training.json").is_file() and (path / "tokenizer" / "vocab.json").is_file()
        _attach_shipped_approx(pipe, path)
    else:
        name = str(source)
        if not _HUB_ID.match(name):
            raise PipelineLoadError(f"source={name!r} is neither an existing folder nor a hub id like 'org/model'")
        pipe = _from_pretrained(name, name, target, dtype, local_only=False)
    pipe._nbd_source = str(source)
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
        raise PipelineLoadError(f"could not load {label!r}: {type(exc).__name__}: {_short(exc)}.{hint}") from exc
    _check_pipeline(pipe)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


APPROX_FILE = "approx_decoder.json"


def _attach_shipped_approx(pipe: Any, folder: Path) -> None:
    """A model folder may carry its own approx-decoder fit (made on images of its own world)."""
    import json

    from .decode import ApproxDecoder

    path = folder / APPROX_FILE
    if path.is_file():
        try:
            pipe.vae._nbd_approx = ApproxDecoder.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise PipelineLoadError(f"{str(path)!r} is not a valid approx decoder: {exc}") from exc


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _check_pipeline(pipe: Any) -> None:
    missing = [name for name in ("scheduler", "vae") if getattr(pipe, name, None) is None]
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is None:
        missing.append("unet or transformer")
    if missing:
        raise PipelineLoadError(f"{type(pipe).__name__} lacks {', '.join(missing)}: not a text-to-image diffusion pipeline")


def set_tiny_decoder(pipe: Any, tiny_vae: Any) -> None:
    """Use a diffusers AutoencoderTiny (TAESD-style) for decoder='tiny' previews of this pipeline."""
    from diffusers import AutoencoderTiny

    if not isinstance(tiny_vae, AutoencoderTiny):
        raise TypeError(f"tiny_vae must be a diffusers AutoencoderTiny, got {type(tiny_vae).__name__}")
    param = next(pipe.vae.parameters())
    pipe._nbd_tiny_vae = tiny_vae.to(param.device, param.dtype)
