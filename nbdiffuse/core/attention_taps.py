"""The query and key projections an attention layer computed, kept by forward hooks, fused or not.

Attention maps (core/attention.py, core/joint_attention.py) are recomputed from the very q and k the
layer's kernel got. A layer computes them with its own projections (`to_q`, `to_k`, and a joint
block's text `add_k_proj`), or, after `pipe.fuse_qkv_projections()` / `transformer.fuse_qkv_projections()`,
with fused ones: `to_kv` (a cross-attention's key and value), `to_qkv` (a self or joint attention's
query, key and value) and `to_added_qkv` (a joint block's text). diffusers keeps the unfused layers
beside the fused ones, so each is hooked and only the ones that ran fill the slot; `take` splits a
fused output the way the processors do (equal parts along the last dimension).
"""
from __future__ import annotations

from typing import Any

import torch

# layer attribute -> the slot key of each equal part of its output along the last dimension (None: not kept)
_TAPS = {
    "to_q": ("q",),
    "to_k": ("k",),
    "add_k_proj": ("text_k",),
    "to_kv": ("k", None),
    "to_qkv": ("q", "k", None),
    "to_added_qkv": (None, "text_k", None),
}
PROJECTIONS = tuple(_TAPS)


def hooks(module: Any, slot: dict[str, Any]) -> list[Any]:
    """Forward hooks on each projection of `module` that exists, keeping its output in `slot` (they return nothing)."""
    return [layer.register_forward_hook(_keep(slot, keys)) for name, keys in _TAPS.items()
            if isinstance(layer := getattr(module, name, None), torch.nn.Module)]


def take(slot: dict[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(q, k, text_k) kept since the last take, each None when no projection made it; they leave the slot."""
    return slot.pop("q", None), slot.pop("k", None), slot.pop("text_k", None)


def _keep(slot: dict[str, Any], keys: tuple[str | None, ...]):
    """Keeps a projection's first output of the layer's call: PAG's joint processor calls its projections
    again on the perturbed row alone (core/pag.py), and the rows read are the first call's."""
    def hook(_module, _args, output) -> None:
        for key, part in zip(keys, output.chunk(len(keys), dim=-1)):
            if key is not None and key not in slot:
                slot[key] = part
    return hook
