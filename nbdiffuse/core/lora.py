"""LoRA weights on a pipeline: diffusers' load_lora_weights, one adapter named "nbd", scale changeable.

load_pipeline(..., lora=...) loads it (core/loading.py); set_lora_scale weighs it between runs;
every run records what it used (lora_params -> params["lora"]). Weights load from safetensors only.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

from .locks import pipe_lock
from .pipe_attrs import lora_info, model_name, set_lora_info
from .quiet_logs import without_message
from .model_source import check_hub_id, local_folder
from .sources import HUB_ID, LoraUnavailable, PipelineLoadError, short_error

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
        try:  # "No LoRA keys associated to CLIPTextModel...": the components are checked below
            with without_message("No LoRA keys associated to", "diffusers.loaders.lora_base", "diffusers.loaders.peft",
                                 "diffusers.loaders.lora_pipeline"):
                pipe.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=LORA_ADAPTER,
                                       use_safetensors=True, local_files_only=True)
        except Exception as exc:  # wrong architecture (size mismatch), a foreign key format, a corrupt file
            _drop_lora(pipe)
            raise PipelineLoadError(f"lora={label!r} does not load into this {type(pipe).__name__} "
                                    f"({model_name(pipe, 'a pipeline object')}): {type(exc).__name__}: {short_error(exc)}. "
                                    "Is it a LoRA for another model family (e.g. SDXL weights on SD 1.5)?") from exc
        components = _lora_components(pipe)
        if not components:
            _drop_lora(pipe)
            raise PipelineLoadError(f"lora={label!r} holds no weights for any part of this {type(pipe).__name__} "
                                    f"({model_name(pipe, 'a pipeline object')}): a LoRA for another model family?")
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[scale])
        set_lora_info(pipe, {"source": label, "file": weights.name, "scale": scale, "components": components})


def set_lora_scale(pipe: Any, scale: float, timeout: float = 0.0) -> None:
    """Weigh the LoRA loaded by load_pipeline(..., lora=...) with `scale` from the next run on (0: the base model).

    Runs read the scale once, at their start (trajectory params["lora"] says which): while a run
    is using the pipeline this waits up to `timeout` seconds for it to end, then refuses.
    """
    scale = check_lora_scale(scale)
    info = lora_info(pipe)
    if info is None or not _lora_components(pipe):
        raise ValueError("this pipeline has no LoRA loaded by nbdiffuse: load one with "
                         "nbd.load_pipeline(source, lora=..., lora_scale=...)")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    with _idle(pipe, timeout):
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[scale])
        set_lora_info(pipe, dict(info, scale=scale))


@contextlib.contextmanager
def _idle(pipe: Any, timeout: float):
    """Hold the pipeline's run lock (runs read the LoRA once, at their start); a run using it
    for longer than `timeout` seconds (a paused one may hold it for good) gets a clear refusal."""
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
    info = lora_info(pipe)
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
        if not HUB_ID.match(label) or path.suffix in _WEIGHT_SUFFIXES:
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
            f"could not load lora={name!r}: {type(exc).__name__}: {short_error(exc)}. If this machine is offline, "
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
    if lora_info(pipe) is not None:
        set_lora_info(pipe, None)
