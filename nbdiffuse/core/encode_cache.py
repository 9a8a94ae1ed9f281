"""A small in-memory cache of prompt encodings, so that a branch (or a re-run) that keeps the
prompt does not run the text encoder(s) again.

Kept per pipeline object (a weak reference: the cache goes with the pipeline) and bounded
(`MAX_ENTRIES` encodings per pipeline, least recently used out first). Never saved: trajectory
files hold no conditioning tensors. Text encoding is deterministic, so a hit returns exactly
what encoding again would (tests check runs stay bit for bit the same).

An entry is used only when all of these are as they were when it was made:
- the family (its name), the encoded prompt and negative prompt (after prepare_prompt), and
  the size (SDXL conditions on it; included for every family, a size change simply re-encodes);
- the pipeline's config (component classes, flags such as SDXL's force_zeros_for_empty_prompt),
  the adapter's own settings (its instance attributes: Flux's `distilled`, PixArt's
  `max_sequence_length`) and the denoiser object (some families read its config while encoding;
  a swapped denoiser just re-encodes);
- each text component (pipe attributes named text_encoder* and tokenizer*, or those a family
  names in `encode_components`): the same object, a tokenizer of the same length (textual
  inversion adds tokens), and for a model every parameter and buffer with the same storage
  (`.to()`, fusing, replacing a weight give new storage) and the same version counter (in-place
  writes such as load_state_dict or `copy_` under no_grad bump it);
- no PEFT adapter (LoRA) inside a text encoder: adapter scales and on/off switches live outside
  the weights, so while one is present nothing is cached, and seeing one drops the pipeline's
  entries.
Not seen: writes through `param.data` (they bypass torch's version counter) that keep the
storage, and new values in freed memory that happens to come back at the same address (a
.half().float() round trip of a text encoder could): call `clear(pipe)` after such surgery.
A hit returns the same Conditioning object to every run that asks: treat it as read-only.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

from .locks import TOKENIZER_LOCK

MAX_ENTRIES = 4  # per pipeline; an SD3 encoding (T5 + two CLIPs, and their batched copy) is ~10 MB

_caches: "weakref.WeakKeyDictionary[Any, OrderedDict]" = weakref.WeakKeyDictionary()
_guard = threading.Lock()
_UNCACHEABLE = object()


def encode(family: Any, prompt: str, negative_prompt: str, size: tuple[int, int]) -> Any:
    """family.encode(prompt, negative_prompt, size), from the cache when nothing it depends on changed."""
    pipe = family.pipe
    state = _text_state(family)
    if state is _UNCACHEABLE:
        clear(pipe)
        with TOKENIZER_LOCK:
            return family.encode(prompt, negative_prompt, size)
    key = (family.name, prompt, negative_prompt, tuple(size) if size is not None else None)
    with _guard:
        try:
            entries = _caches.setdefault(pipe, OrderedDict())
        except TypeError:  # a pipeline that cannot be weakly referenced: no caching
            entries = None
        found = entries.get(key) if entries is not None else None
        if found is not None and found[0] == state:
            entries.move_to_end(key)
            return found[1]
    with TOKENIZER_LOCK:
        cond = family.encode(prompt, negative_prompt, size)
    if entries is not None:
        with _guard:
            entries[key] = (state, cond)
            entries.move_to_end(key)
            while len(entries) > MAX_ENTRIES:
                entries.popitem(last=False)
    return cond


def clear(pipe: Any = None) -> None:
    """Forget the encodings of `pipe` (of every pipeline when None)."""
    with _guard:
        if pipe is None:
            _caches.clear()
        else:
            try:
                _caches.pop(pipe, None)
            except TypeError:
                pass


def cached_count(pipe: Any) -> int:
    """How many encodings are kept for `pipe` (for tests and curiosity)."""
    with _guard:
        try:
            return len(_caches.get(pipe, ()))
        except TypeError:
            return 0


def _component_names(family: Any) -> list[str]:
    names = getattr(family, "encode_components", None)
    if names is not None:
        return list(names)
    config = getattr(family.pipe, "config", {})
    return sorted(n for n in config if n.startswith(("text_encoder", "tokenizer")))


def _text_state(family: Any) -> Any:
    """What the encoding depends on besides its arguments, as a comparable value."""
    import torch

    pipe = family.pipe
    config = getattr(pipe, "config", {})
    # Instance attributes are the adapter's settings, except the pipeline itself and the device and
    # dtype it caches on first use (looked up from the pipeline; a moved model changes its weights' storage).
    settings = tuple(sorted((k, repr(v)) for k, v in vars(family).items()
                            if k not in ("pipe", "device", "dtype") and not k.startswith("_")))
    denoiser = getattr(family, "denoiser", None)
    parts: list[Any] = [tuple(sorted((k, repr(v)) for k, v in config.items())), settings,
                        None if denoiser is None else _Same(denoiser)]
    for name in _component_names(family):
        obj = getattr(pipe, name, None)
        if obj is None:
            parts.append((name, None))
            continue
        if isinstance(obj, torch.nn.Module):
            tensors = []
            for module in obj.modules():
                if type(module).__module__.startswith("peft."):
                    return _UNCACHEABLE
                for tensor in (*module._parameters.values(), *module._buffers.values()):
                    if tensor is not None:
                        tensors.append((tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device))
            parts.append((name, _Same(obj), tuple(tensors)))
        else:
            length = len(obj) if hasattr(obj, "__len__") else None
            parts.append((name, _Same(obj), length))
    return tuple(parts)


class _Same:
    """Compares equal only to a reference to the very same object (a weak one where possible,
    so the cache never keeps a replaced text encoder alive, and a reused id() never matches)."""

    __slots__ = ("_ref", "_strong")

    def __init__(self, obj: Any):
        try:
            self._ref, self._strong = weakref.ref(obj), None
        except TypeError:
            self._ref, self._strong = None, obj

    def get(self) -> Any:
        return self._strong if self._ref is None else self._ref()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Same):
            return NotImplemented
        mine = self.get()
        return mine is not None and mine is other.get()

    def __hash__(self) -> int:
        return id(self.get())
