"""load_pipeline(): the embedded model, a local diffusers folder, a hub id, or a pipeline object;
optionally with a LoRA (diffusers' load_lora_weights, one adapter named "nbd", scale changeable).

Weights load from safetensors only and never with remote code.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from .model_source import check_hub_id, local_folder

EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "shapes" / "model"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}


class PipelineLoadError(ValueError):
    """A model could not be loaded; the message says what and how to fix it."""


class EmbeddedModelMissing(PipelineLoadError, FileNotFoundError):
    """The embedded shapes model is not in this installation."""


class LoraUnavailable(PipelineLoadError, ImportError):
    """lora= needs peft (diffusers' PEFT backend), which is not installed, or, for a LoRA with
    text-encoder weights, is older than the installed transformers accepts."""


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
                  lora_scale: float = 1.0):
    """A diffusers pipeline ready for nbd.trace and the widgets.

    source: None for the embedded shapes model (CPU-friendly, offline); a local diffusers
    folder; a Hugging Face hub id (downloaded by diffusers, or taken from the local cache
    when offline); or an existing pipeline object, checked and returned as is.
    lora: LoRA weights to add (a .safetensors file, a folder holding one, or a hub id), loaded
    with diffusers' load_lora_weights as the adapter "nbd" (needs peft: pip install "nbdiffuse[lora]").
    A pipeline object gets it loaded into itself, replacing an earlier nbd LoRA. lora_scale
    weighs it (0 is the base model); change it between runs with nbd.set_lora_scale(pipe, scale).
    """
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
            if getattr(source, "_nbd_lora", None) is None:
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
        pipe._nbd_source = "nbdiffuse/shapes"
        pipe._nbd_shapes = True
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
        pipe._nbd_shapes = (path / "training.json").is_file() and (path / "tokenizer" / "vocab.json").is_file()
        _attach_shipped_decoders(pipe, path)
        if pipe._nbd_shapes:
            _shapes_layout(pipe)
    else:
        name = str(source)
        check_hub_id(name)
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


def _shapes_layout(pipe: Any) -> None:
    """A shapes model's VAE in channels_last: its small convolutions run ~16% faster on a CPU (a
    64x64 decode, the final frame of every run and every scrub: 18.8 -> 15.8 ms on 1 thread,
    13.7 -> 11.6 ms on 2; the same picture to 5e-6). Its UNet gains nothing (attention at 16x16)."""
    pipe.vae.to(memory_format=torch.channels_last)


def tiny_decoder(pipe: Any) -> Any:
    """The tiny decoder of this pipeline (set_tiny_decoder, or shipped in its folder), or None."""
    return getattr(pipe, "_nbd_tiny_vae", None)


APPROX_FILE = "approx_decoder.json"
TINY_FOLDER = "tiny_decoder"  # a TinyDecoder (core/tiny_decoder.py) distilled from the folder's VAE


def _attach_shipped_decoders(pipe: Any, folder: Path) -> None:
    """A model folder may carry its own approx-decoder fit (made on images of its own world) and a
    tiny decoder distilled from its VAE (nbdiffuse.shapes.distil_tiny); both become the pipeline's."""
    import json

    from .decode import ApproxDecoder

    path = folder / APPROX_FILE
    if path.is_file():
        try:
            pipe.vae._nbd_approx = ApproxDecoder.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise PipelineLoadError(f"{str(path)!r} is not a valid approx decoder: {exc}") from exc
    tiny = folder / TINY_FOLDER
    if (tiny / "config.json").is_file():
        from .tiny_decoder import TinyDecoder

        try:
            decoder = TinyDecoder.from_pretrained(tiny, use_safetensors=True, local_files_only=True)
        except Exception as exc:  # a broken or foreign folder: say which, do not load the pipeline half-way
            raise PipelineLoadError(f"{str(tiny)!r} is not a valid tiny decoder: {type(exc).__name__}: "
                                    f"{_short(exc)}") from exc
        set_tiny_decoder(pipe, decoder)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _check_pipeline(pipe: Any) -> None:
    missing = [name for name in ("scheduler", "vae") if getattr(pipe, name, None) is None]
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is None:
        missing.append("unet or transformer")
    if missing:
        raise PipelineLoadError(f"{type(pipe).__name__} lacks {', '.join(missing)}: not a text-to-image diffusion pipeline")


# --- LoRA ----------------------------------------------------------------------------------
LORA_ADAPTER = "nbd"  # the one adapter nbdiffuse manages; load others with diffusers directly
_LORA_SKIP = ("scheduler", "optimizer", "checkpoint")  # not LoRA weights (as diffusers' own guess)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def check_lora_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"lora_scale must be a finite number (1.0 as trained, 0 turns the LoRA off); got {scale!r}")
    return float(scale)


def load_lora(pipe: Any, lora: Any, scale: float = 1.0) -> None:
    """Load LoRA weights into `pipe` as the adapter "nbd" (replacing an earlier one), weighed by `scale`.

    Only "nbd" is active afterwards (set_adapters); a refused LoRA leaves the pipeline with none.
    """
    scale = check_lora_scale(scale)
    if not hasattr(pipe, "load_lora_weights"):
        raise PipelineLoadError(f"lora={str(lora)!r}: {type(pipe).__name__} does not take LoRA weights "
                                "(diffusers gives it no load_lora_weights)")
    from diffusers.utils import USE_PEFT_BACKEND

    if not USE_PEFT_BACKEND:
        raise LoraUnavailable("lora= needs the peft package (diffusers' LoRA backend): "
                              "pip install \"nbdiffuse[lora]\" (or pip install peft), then restart the kernel")
    weights, label = _lora_file(lora)
    _check_peft_for_text_encoders(weights, label)
    with _idle(pipe, 0.0):
        _drop_lora(pipe)
        quiet = _NoLoraKeysFilter()  # "No LoRA keys associated to CLIPTextModel...": components are checked below
        loggers = [logging.getLogger(name) for name in ("diffusers.loaders.lora_base", "diffusers.loaders.peft",
                                                        "diffusers.loaders.lora_pipeline")]
        for logger in loggers:
            logger.addFilter(quiet)
        try:
            pipe.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=LORA_ADAPTER,
                                   use_safetensors=True, local_files_only=True)
        except Exception as exc:  # wrong architecture (size mismatch), a foreign key format, a corrupt file
            _drop_lora(pipe)
            raise PipelineLoadError(f"lora={label!r} does not load into this {type(pipe).__name__} "
                                    f"({_model_label(pipe)}): {type(exc).__name__}: {_short(exc)}. "
                                    "Is it a LoRA for another model family (e.g. SDXL weights on SD 1.5)?") from exc
        finally:
            for logger in loggers:
                logger.removeFilter(quiet)
        components = _lora_components(pipe)
        if not components:
            _drop_lora(pipe)
            raise PipelineLoadError(f"lora={label!r} holds no weights for any part of this {type(pipe).__name__} "
                                    f"({_model_label(pipe)}): a LoRA for another model family?")
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[scale])
        pipe._nbd_lora = {"source": label, "file": weights.name, "scale": scale, "components": components}


def set_lora_scale(pipe: Any, scale: float, timeout: float = 0.0) -> None:
    """Weigh the LoRA loaded by load_pipeline(..., lora=...) with `scale` from the next run on (0: the base model).

    Runs read the scale once, at their start (trajectory params["lora"] says which): while a run
    is using the pipeline this waits up to `timeout` seconds for it to end, then refuses.
    """
    scale = check_lora_scale(scale)
    info = getattr(pipe, "_nbd_lora", None)
    if info is None or not _lora_components(pipe):
        raise ValueError("this pipeline has no LoRA loaded by nbdiffuse: load one with "
                         "nbd.load_pipeline(source, lora=..., lora_scale=...)")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    with _idle(pipe, timeout):
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[scale])
        pipe._nbd_lora = dict(info, scale=scale)


@contextlib.contextmanager
def _idle(pipe: Any, timeout: float):
    """Hold the pipeline's run lock (runs read the LoRA once, at their start); a run using it
    for longer than `timeout` seconds (a paused one may hold it for good) gets a clear refusal."""
    from .trace import pipe_lock

    lock = pipe_lock(pipe)
    if not (lock.acquire(timeout=timeout) if timeout > 0 else lock.acquire(blocking=False)):
        raise RuntimeError("a run is using this pipeline; LoRA changes apply to whole runs: "
                           "make them when the run ends (ex.wait()) or stop the run first")
    try:
        yield
    finally:
        lock.release()


def lora_params(pipe: Any) -> dict | None:
    """What a run records as params["lora"]: the nbd LoRA's source, file, scale and components;
    for adapters loaded with diffusers directly, their names and components (scale unknown); None without."""
    components = _lora_components(pipe, None)
    if not components:
        return None
    info = getattr(pipe, "_nbd_lora", None)
    if info is not None and LORA_ADAPTER in {name for names in components.values() for name in names}:
        return dict(info, components=list(info["components"]))
    return {"source": None, "file": None, "scale": None, "components": sorted(components),
            "adapters": sorted({name for names in components.values() for name in names})}


_TEXT_ENCODER_KEYS = ("text_encoder", "lora_te")  # diffusers' and kohya's names for text-encoder LoRA weights


def _check_peft_for_text_encoders(weights: Path, label: str) -> None:
    """Text encoders take their LoRA through transformers, which checks peft's version itself
    (MIN_PEFT_VERSION, 0.22.0 from transformers 5.24 on); the UNet's goes through diffusers (peft 0.17
    is enough). Refuse a LoRA with text-encoder weights before touching the pipeline when that check
    would fail, naming both versions, instead of passing on transformers' mid-load error."""
    import importlib.metadata

    from packaging.version import Version
    from safetensors import safe_open

    try:
        import transformers
        from transformers.integrations import peft as transformers_peft
    except ImportError:  # no transformers here: nothing of it to check
        return
    needed = getattr(transformers_peft, "MIN_PEFT_VERSION", None)
    installed = importlib.metadata.version("peft")
    if needed is None or Version(installed) >= Version(needed):
        return
    try:
        with safe_open(str(weights), framework="pt") as f:
            if not any(key.startswith(_TEXT_ENCODER_KEYS) for key in f.keys()):
                return
    except Exception:  # not a readable safetensors file: the load below says so
        return
    raise LoraUnavailable(f"lora={label!r} has text-encoder weights, and transformers {transformers.__version__} "
                          f"loads those only with peft >= {needed}; peft {installed} is installed. "
                          f"Install a newer peft, or a transformers that takes peft {installed} "
                          "(pip install \"nbdiffuse[lora]\" picks a pair that works), then restart the kernel")


def _lora_file(lora: Any) -> tuple[Path, str]:
    """The .safetensors file `lora` names (a file, a folder with one, a hub id), and a label for messages."""
    label = str(lora)
    if local_folder(lora, "lora") is None:  # core/model_source.py: the OS's errors name lora
        check_hub_id(label, "lora")
    path = Path(lora).expanduser()
    if not path.exists():
        if not _HUB_ID.match(label) or path.suffix in _WEIGHT_SUFFIXES:
            raise PipelineLoadError(f"lora={label!r} does not exist (no such file or folder) and is not a hub id "
                                    "like 'org/lora'")
        path = _lora_snapshot(label)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise PipelineLoadError(f"lora={label!r} is not a .safetensors file; LoRA weights load from safetensors "
                                    "only (pickled .bin/.pt/.ckpt files could run code)")
        return path, label
    found = sorted(f.name for f in path.glob("*.safetensors")
                   if f.is_file() and not any(word in f.name for word in _LORA_SKIP))
    if "pytorch_lora_weights.safetensors" in found:
        found = ["pytorch_lora_weights.safetensors"]
    if not found:
        pickled = sorted(f.name for f in path.iterdir() if f.suffix in _WEIGHT_SUFFIXES)
        extra = f" (only pickled {', '.join(pickled[:3])}: refused, loading them could run code)" if pickled else ""
        raise PipelineLoadError(f"lora={label!r} holds no .safetensors LoRA weights{extra}")
    if len(found) > 1:
        raise PipelineLoadError(f"lora={label!r} holds several .safetensors files ({', '.join(found[:5])}); "
                                "pass the path of the one to load")
    return path / found[0], label


def _lora_snapshot(name: str) -> Path:
    """The local folder of hub id `name`'s safetensors files (downloaded, or from the cache when offline)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=["*.safetensors"]))
    except Exception as exc:  # offline and not cached, unknown id, network
        raise PipelineLoadError(
            f"could not load lora={name!r}: {type(exc).__name__}: {_short(exc)}. If this machine is offline, "
            f"download it where there is network (`hf download {name}`) and pass the .safetensors file's path "
            "or use the local cache (HF_HUB_OFFLINE=1); check the id's spelling.") from exc


def _lora_components(pipe: Any, adapter: str | None = LORA_ADAPTER) -> Any:
    """Components holding `adapter` (a sorted list), or with adapter None every component's adapters (a dict)."""
    try:
        found = {name: list(names) for name, names in pipe.get_list_adapters().items() if names}
    except Exception:  # no LoRA support (no peft, or a pipeline without the LoRA mixin)
        found = {}
    if adapter is None:
        return found
    return sorted(name for name, names in found.items() if adapter in names)


def _drop_lora(pipe: Any) -> None:
    adapters = _lora_components(pipe, None)
    if any(names == [LORA_ADAPTER] for names in adapters.values()):
        if all(names == [LORA_ADAPTER] for names in adapters.values()):
            pipe.unload_lora_weights()  # takes the LoRA layers out: a plain model again (prompt encodings cache)
        else:
            pipe.delete_adapters(LORA_ADAPTER)  # leave the adapters loaded with diffusers directly alone
    if getattr(pipe, "_nbd_lora", None) is not None:
        pipe._nbd_lora = None


def _model_label(pipe: Any) -> str:
    return str(getattr(pipe, "_nbd_source", None) or pipe.config.get("_name_or_path") or "a pipeline object")


class _NoLoraKeysFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No LoRA keys associated to" not in record.getMessage()


def set_tiny_decoder(pipe: Any, tiny_vae: Any) -> None:
    """Use a diffusers AutoencoderTiny (TAESD-style) or an nbdiffuse TinyDecoder for decoder='tiny'
    pictures of this pipeline and for the Explorer's frames (its `preview`); None removes it.
    The embedded model comes with a TinyDecoder distilled from its VAE."""
    from diffusers import AutoencoderTiny

    from .tiny_decoder import TinyDecoder

    if tiny_vae is None:
        pipe.__dict__.pop("_nbd_tiny_vae", None)
        return
    if not isinstance(tiny_vae, (AutoencoderTiny, TinyDecoder)):
        raise TypeError(f"tiny_vae must be a diffusers AutoencoderTiny or an nbdiffuse TinyDecoder, "
                        f"got {type(tiny_vae).__name__}")
    param = next(pipe.vae.parameters())
    # torch's own .to: diffusers' ModelMixin.to warns about float32-kept modules on every dtype move,
    # even when a model has none (an empty list), which would show on every load of the embedded model
    pipe._nbd_tiny_vae = torch.nn.Module.to(tiny_vae, param.device, param.dtype)
