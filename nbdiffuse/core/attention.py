"""Cross-attention maps per prompt token, per denoising step, recorded beside the run without changing it.

What the maps are: at each cross-attention layer, each latent position's softmax over the prompt's
tokens (the model's own attention probabilities for the conditional prompt), averaged over heads,
brought to the latent grid (bilinear) and averaged over layers; one (tokens, h, w) map a step.
The same quantity prompt-to-prompt and DAAM read, kept per step instead of summed over time.

Which layers (`LAYERS`): a UNet's are averaged over its decoder ("decoder", the up blocks, the
default), or over all of them ("all"). Why: on the embedded model the encoder's and the middle
block's maps are nearly flat and lower on the object than around it: there the object's positions
give more of their attention to the end and padding tokens (which carry the whole sentence), so every
word's share drops on the object, and the mean over all seven layers peaks off the object (colour
word 23%, shape 23% in the pointing game over 200 held-out captions); the decoder's four layers
point at it (89.5%, 90.0%; benchmarks/attention_maps.py; both on the model before its guidance
fine-tune, the decoder's 89.5%, 90.5% after it). A transformer's blocks are all averaged.

How, without changing a single value of the run: fused attention kernels (scaled_dot_product_attention)
return no probabilities, so forward hooks on each cross-attention layer's `to_q` and `to_k`
projections (or the fused `to_kv` after `fuse_qkv_projections()`: core/attention_taps.py) keep their
outputs (the very tensors the kernel got), and the probabilities of the text columns are computed
from them on the side. Hooks return nothing, so the run's tensors are bit for bit those of a run
without them (tests/core/test_attention.py checks every step). A layer that ran without either is
an error naming it, not a map of zeros.

Covered: cross-attention modules of diffusers' `Attention` class whose keys come from the text
(`attn2` of SD 1.x/2.x and SDXL UNets, PixArt's transformer blocks; their text attention mask is
applied), and the joint attention of SD3 and Flux (text and picture in one sequence; Flux's
single-stream blocks too): the text columns of the picture rows (core/joint_attention.py). A word's
columns are its tokens in every encoder the denoiser reads (SD3: CLIP's and T5's; prompt_columns).
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from . import attention_taps, joint_attention

MAP_DTYPE = torch.float16  # kept per step: the prompt's tokens x the latent grid, half precision


LAYERS = ("decoder", "all")  # which cross-attention layers a UNet's maps average; transformers: all blocks


def cross_attention_layers(denoiser: Any, layers: str = "all") -> list[tuple[str, Any]]:
    """(name, module) of each cross-attention layer of a UNet or transformer (diffusers' Attention);
    layers="decoder": a UNet's up blocks only (a denoiser without up blocks keeps all of its layers)."""
    from diffusers.models.attention_processor import Attention

    if layers not in LAYERS:
        raise ValueError(f"layers must be one of {', '.join(map(repr, LAYERS))}, got {layers!r}")
    found = [(name, module) for name, module in denoiser.named_modules()
             if isinstance(module, Attention) and getattr(module, "is_cross_attention", False)]
    decoder = [(name, module) for name, module in found if name.startswith("up_blocks.")]
    return decoder if layers == "decoder" and decoder else found


class AttentionRecorder:
    """Per-step cross-attention maps of a pipeline's denoiser: a context manager around a run.

    `tokens`: the positions in the text encoder's sequence to keep (the prompt's own tokens, no
    start, end or padding). `grid`: the latent (h, w). `layers`: one of LAYERS. Use `step_done()`
    after each denoising step: it returns that step's (len(tokens), h, w) map and starts the next one.
    Only the conditional prompt is read: the last row of a classifier-free-guidance batch (the
    families batch (uncond, cond)), and each layer's first call of a step (Flux calls cond, then uncond);
    a PAG run sets `row` to the prompt's row of its step's batch (core/pag.py: the perturbed row is last).
    A denoiser without cross-attention layers is read at its joint attention (core/joint_attention.py).
    """

    def __init__(self, denoiser: Any, tokens: Sequence[int], grid: tuple[int, int], layers: str = "all"):
        self.layers = cross_attention_layers(denoiser, layers)
        self.joint = not self.layers
        if self.joint:
            self.layers = joint_attention.joint_attention_layers(denoiser)
        if not self.layers:
            raise ValueError(f"attention maps need cross-attention or joint attention layers; "
                             f"{type(denoiser).__name__} has neither")
        self.tokens = torch.as_tensor(list(tokens), dtype=torch.long)
        self.grid = (int(grid[0]), int(grid[1]))
        self._handles: list[Any] = []
        self._ran: set[int] = set()  # layers read this step
        self._unread: list[str] = []  # layers that ran this step without a query and key the hooks kept
        self._text_len: int | None = None  # joint attention: the text's length this call
        self._sum: torch.Tensor | None = None
        self._count = 0
        self.row = -1  # the batch row of the prompt

    def __enter__(self) -> "AttentionRecorder":
        for name, module in self.layers:
            slot: dict[str, Any] = {}
            if self.joint:
                self._handles.extend(joint_attention.hooks(module, slot))
            else:
                self._handles.extend(attention_taps.hooks(module, slot))
                self._handles.append(module.register_forward_pre_hook(_keep_mask(slot), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._after(name, module, slot)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _after(self, name: str, module: Any, slot: dict[str, Any]):
        def hook(_module, _args, _output) -> None:
            first = id(module) not in self._ran
            self._ran.add(id(module))
            if not first:  # the unconditional call of a model that runs cond and uncond apart
                slot.clear()
                return
            if self.joint:
                got = joint_attention.text_probs(module, slot, self._text_len, self.row)
                if got is not None:
                    self._text_len = got[1]
                    self._add(got[0])
                else:
                    self._unread.append(name)
                return
            q, k, _ = attention_taps.take(slot)
            mask = slot.pop("mask", None)
            if q is not None and k is not None:
                self._add(_cross_probs(module, q, k, mask, self.row))
            else:
                self._unread.append(name)
        return hook

    @torch.no_grad()
    def _add(self, probs: torch.Tensor) -> None:
        """Add one layer's (positions, text) probabilities, brought to the latent grid, to this step's sum."""
        n, t = probs.shape
        probs = probs[:, self.tokens.clamp(max=t - 1)]
        h, w = _layer_grid(n, self.grid)
        maps = probs.T.reshape(1, -1, h, w)
        if (h, w) != self.grid:
            maps = F.interpolate(maps, size=self.grid, mode="bilinear", align_corners=False)
        self._sum = maps[0] if self._sum is None else self._sum + maps[0]
        self._count += 1

    def step_done(self) -> torch.Tensor:
        """This step's maps (len(tokens), h, w), the mean over its layers (zeros when no layer ran).

        A layer that ran without a query and key the hooks could keep (a processor that computes them
        some other way) is an error that names it: maps of fewer layers, or zeros, would not be the model's."""
        unread, self._unread = self._unread, []
        if unread:
            self._sum, self._count, self._ran = None, 0, set()
            layer = dict(self.layers)[unread[0]]
            processor = type(getattr(layer, "processor", None)).__name__
            raise RuntimeError(
                f"attention maps: layer {unread[0]!r} ({type(layer).__name__}, processor {processor}) ran without "
                f"the query and key projections nbdiffuse reads ({', '.join(attention_taps.PROJECTIONS)}); "
                f"{len(unread)} layer(s) unread this step. Run with attention=False, or set a diffusers attention "
                f"processor that uses them")
        if self._sum is None:
            done = torch.zeros(len(self.tokens), *self.grid)
        else:
            done = self._sum / self._count
        self._sum, self._count, self._ran = None, 0, set()
        return done.to(MAP_DTYPE).cpu()


@torch.no_grad()
def _cross_probs(module: Any, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None,
                 row: int = -1) -> torch.Tensor:
    """(positions, text) attention probabilities of batch row `row`, heads averaged, from the layer's q and k."""
    q, k = q[row][None].float(), k[row][None].float()
    heads = module.heads
    n, t = q.shape[1], k.shape[1]
    q = q.view(1, n, heads, -1).transpose(1, 2)
    k = k.view(1, t, heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) * module.scale  # (1, heads, n, t)
    if mask is not None:
        one = mask[min(row, len(mask) - 1) if row >= 0 else row]  # a mask of one row covers every row
        scores = scores + _additive_mask(one[None], t, scores.dtype)
    return scores.softmax(-1).mean(1)[0]


def _keep_mask(slot: dict[str, Any]):
    def hook(_module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
        slot["mask"] = mask if isinstance(mask, torch.Tensor) else None
    return hook


def _additive_mask(mask: torch.Tensor, t: int, dtype: torch.dtype) -> torch.Tensor:
    """A text attention mask as the processors take it (1/0 keep flags or an additive bias) -> a bias (1, 1, 1, t)."""
    mask = mask.reshape(mask.shape[0], -1)[:, -t:].to(dtype)
    if mask.min() >= 0 and mask.max() <= 1:  # keep flags
        mask = (1 - mask) * torch.finfo(dtype).min
    return mask[:, None, None, :]


def _layer_grid(n: int, grid: tuple[int, int]) -> tuple[int, int]:
    """A layer's (h, w) from its number of positions: the latent grid shrunk by a power of two."""
    h, w = grid
    factor = math.sqrt(h * w / n)
    lh, lw = round(h / factor), round(w / factor)
    if lh * lw != n:
        raise ValueError(f"a cross-attention layer of {n} positions does not tile the {h} x {w} latent grid")
    return lh, lw


def prompt_tokens(tokenizer: Any, prompt: str) -> list[tuple[str, int, bool]]:
    """The prompt's tokens as the tokenizer splits them, special tokens left out: (text, position in the
    encoder's sequence, whether it starts a word). Tokens past the encoder's length are left out (truncated)."""
    ids = tokenizer(prompt, truncation=True, max_length=getattr(tokenizer, "model_max_length", None))["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    special = set(getattr(tokenizer, "all_special_ids", []))
    clip = "clip" in type(tokenizer).__name__.lower()  # BPE: a word's last token ends with </w>
    tokens: list[tuple[str, int, bool]] = []
    open_word = False
    for position, (token_id, piece) in enumerate(zip(ids, pieces)):
        if token_id in special:
            open_word = False
            continue
        if clip:
            starts, text = not open_word, piece.removesuffix("</w>")
            open_word = not piece.endswith("</w>")
        else:  # sentencepiece (T5): a token that starts a word carries the mark
            starts, text = piece.startswith("\u2581") or not tokens, piece.lstrip("\u2581")
        tokens.append((text, position, starts))
    return tokens


def prompt_words(tokenizer: Any, prompt: str) -> tuple[list[str], list[list[int]]]:
    """The prompt's words as the tokenizer splits them, and for each word its token positions in the
    encoder's sequence (position 0 is the start token). A word of several tokens maps back to one word;
    punctuation is a word of its own. Tokens past the encoder's length are left out (truncated)."""
    words: list[str] = []
    positions: list[list[int]] = []
    for text, position, starts in prompt_tokens(tokenizer, prompt):
        if starts:
            words.append(text)
            positions.append([position])
        else:
            words[-1] += text
            positions[-1].append(position)
    return words, positions


def prompt_columns(readers: Sequence[tuple[Any, int, int]], prompt: str) -> tuple[list[str], list[list[int]]]:
    """The prompt's words and, for each, its columns in a text sequence joined from several encoders.

    readers: (tokenizer, offset, length) per encoder, in the sequence's order (SD3: CLIP's 77 columns,
    then T5's 256). The first one's words are the words; each later encoder's tokens are matched to them
    by their characters (align_words: T5's "circle," gives its "circle" tokens to CLIP's "circle" and its
    "," to CLIP's ","), and join that word's columns at the encoder's offset; tokens past `length` columns
    (truncated) are left out."""
    (first, offset, length), *others = readers
    words, positions = prompt_words(first, prompt)
    positions = [[offset + p for p in ps if p < length] for ps in positions]
    for tokenizer, offset, length in others:
        tokens = prompt_tokens(tokenizer, prompt)
        for owner, (_, p, _) in zip(align_words(words, [text for text, _, _ in tokens]), tokens):
            if owner is not None and p < length:
                positions[owner].append(offset + p)
    return words, positions


def align_words(words: Sequence[str], others: Sequence[str]) -> list[int | None]:
    """For each of `others` (another tokenizer's words or tokens of the same text), the index of the word of
    `words` that holds the first character both read; None where they share none (a piece the other
    tokenizer made its own way, an unknown token).

    The two texts are lined up character by character, case and spaces left out (difflib's matching
    blocks), so punctuation finds its own word and where the texts part, only what differs is lost."""
    ours = [(char, i) for i, word in enumerate(words) for char in _chars(word)]
    theirs = [(char, j) for j, piece in enumerate(others) for char in _chars(piece)]
    matcher = difflib.SequenceMatcher(None, [c for c, _ in ours], [c for c, _ in theirs], autojunk=False)
    found: list[int | None] = [None] * len(others)
    for a, b, size in sorted(matcher.get_matching_blocks(), key=lambda block: block[1]):
        for n in range(size):
            j = theirs[b + n][1]
            if found[j] is None:
                found[j] = ours[a + n][1]
    return found


def _chars(piece: str) -> str:
    return "".join(char for char in piece.lower() if not char.isspace())
