"""The text columns of joint attention (SD3, Flux): how much each picture position attends to each prompt token.

SD3's and Flux's blocks attend over one sequence that holds the picture's tokens and the text's; their
"cross-attention" is the picture rows' softmax over that whole sequence, read at the text columns. As
for a UNet's cross-attention (core/attention.py), the fused kernel returns no probabilities, so
forward hooks keep the projections the block computed (`to_q`, `to_k`, `add_k_proj`, or their fused
forms: core/attention_taps.py) and the probabilities are recomputed from them on the side, with the
block's own q/k norms and, for Flux, its rotary position embedding; the hooks return nothing, so the
run is bit for bit unchanged.

Layouts: SD3 (diffusers' Attention with a joint processor) puts the picture first and the text after
it; Flux's dual-stream blocks put the text first; Flux's single-stream blocks get the text and the
picture already joined (text first), with the text's length as its dual-stream blocks saw it.
"""
from __future__ import annotations

from typing import Any

import torch

from . import attention_taps


def joint_attention_layers(denoiser: Any) -> list[tuple[str, Any]]:
    """(name, module) of each attention of a transformer that reads the text jointly with the picture:
    dual-stream blocks (their own text projections, `add_k_proj`) and Flux's single-stream blocks."""
    return [(name, module) for name, module in denoiser.named_modules()
            if hasattr(module, "to_q") and hasattr(module, "heads")
            and (getattr(module, "add_k_proj", None) is not None or _single_stream(name, module))]


def _single_stream(name: str, module: Any) -> bool:
    return type(module).__name__ == "FluxAttention" and "single_transformer_blocks" in name


def text_first(module: Any) -> bool:
    """Flux joins text then picture; SD3's joint processor picture then text."""
    return type(module).__name__ == "FluxAttention"


def hooks(module: Any, slot: dict[str, Any]) -> list[Any]:
    """Forward hooks that keep, in `slot`, the projections (fused or not) and the rotary embedding a joint block uses."""
    def keep_rotary(_module, _args, kwargs) -> None:
        slot["rotary"] = kwargs.get("image_rotary_emb")

    return [*attention_taps.hooks(module, slot), module.register_forward_pre_hook(keep_rotary, with_kwargs=True)]


@torch.no_grad()
def text_probs(module: Any, slot: dict[str, Any], text_len: int | None,
               row: int = -1) -> tuple[torch.Tensor, int] | None:
    """(picture positions, text positions) attention probabilities of batch row `row`, heads averaged,
    and the text's length; None when no query and key were kept (or a single-stream block has no text
    length yet). `text_len`: for a single-stream block, the text's length (as the dual-stream blocks of
    the same call saw it)."""
    q, k, text_k = attention_taps.take(slot)
    rotary = slot.pop("rotary", None)
    if q is None or k is None:
        return None
    heads = module.heads
    q, k = _heads(q[row][None], heads), _heads(k[row][None], heads)  # (1, S, H, D)
    q, k = _norm(module, "norm_q", q), _norm(module, "norm_k", k)
    if text_k is not None:
        text_k = _norm(module, "norm_added_k", _heads(text_k[row][None], heads))
        t = text_k.shape[1]
        # the text's queries do not matter here: only picture rows are read
        k = torch.cat([text_k, k], 1) if text_first(module) else torch.cat([k, text_k], 1)
        if text_first(module):
            q = torch.cat([q.new_zeros(1, t, *q.shape[2:]), q], 1)
    else:  # single stream: text and picture already joined, text first
        if text_len is None:
            return None
        t = text_len
    if rotary is not None:
        from diffusers.models.embeddings import apply_rotary_emb

        q, k = apply_rotary_emb(q, rotary, sequence_dim=1), apply_rotary_emb(k, rotary, sequence_dim=1)
    first = text_first(module)
    picture_q = q[:, t:] if first else q
    scores = picture_q.transpose(1, 2).float() @ k.transpose(1, 2).float().transpose(-1, -2)
    probs = (scores * q.shape[-1] ** -0.5).softmax(-1).mean(1)[0]  # (picture, text + picture)
    return (probs[:, :t] if first else probs[:, -t:]), t


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, -1))


def _norm(module: Any, name: str, x: torch.Tensor) -> torch.Tensor:
    norm = getattr(module, name, None)
    return x if norm is None else norm(x)
