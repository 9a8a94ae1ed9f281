"""A CLIP-style BPE tokenizer for the shapes grammar, trained with `tokenizers`.

Every word of the grammar becomes one token, so the text encoder sees "purple" as one symbol
rather than as pieces it must learn to glue together. Hand-written merges tend to split words
badly; training BPE on the grammar's own words gets the merges right by construction.

The files are the ones transformers' CLIPTokenizer reads (vocab.json, merges.txt,
tokenizer_config.json), and the normalizer / pre-tokenizer here mirror the ones CLIPTokenizer
builds, so what was trained is what gets loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

from .grammar import FILLER_WORDS, VOCABULARY

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"  # also padding and unknown, as in CLIP
END_OF_WORD = "</w>"
# The longest caption is 9 words + a comma, 12 tokens with start and end; 20 leaves room for
# articles and a few unknown words without truncating the ones the grammar knows.
MODEL_MAX_LENGTH = 20


def grammar_words() -> list[str]:
    """Every word the grammar uses: vocabulary words (position phrases split), fillers, the comma."""
    words = {word for values in VOCABULARY.values() for phrase in values for word in phrase.split()}
    words.update(FILLER_WORDS)
    words.add(",")
    return sorted(words)


def _clip_like_tokenizer(model: BPE) -> Tokenizer:
    tokenizer = Tokenizer(model)
    # Same normalizer and pre-tokenizer as transformers' CLIPTokenizer.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tokenizer


def train_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train BPE on the grammar's words; returns (vocab token -> id, merges in order).

    Training runs until no pair is left inside any word, i.e. until every grammar word is one
    token. Then every byte-level symbol, alone and word-final, is added to the vocabulary, so any
    text (unknown words included) still tokenizes, one symbol per byte at worst.
    """
    tokenizer = _clip_like_tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD))
    trainer = BpeTrainer(
        vocab_size=10_000,  # an upper bound only; training stops when the words are whole
        min_frequency=1,
        special_tokens=[BOS_TOKEN, EOS_TOKEN],
        end_of_word_suffix=END_OF_WORD,
        show_progress=False,
    )
    # The trainer breaks ties between equally frequent pairs in hash-map order, which changes from
    # run to run. Distinct, irregular word counts (fixed here) make ties between pairs practically
    # impossible, so the merges come out the same every time.
    counts = np.random.default_rng(0).choice(np.arange(200, 2000), size=len(grammar_words()), replace=False)
    corpus = [" ".join([word] * int(count)) for word, count in zip(grammar_words(), counts)]
    tokenizer.train_from_iterator(corpus, trainer=trainer)

    # tokenizers serializes merges as [left, right] pairs (older versions: "left right" strings).
    raw_merges = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in raw_merges]
    # Ids in a fixed order as well: special tokens, every byte-level symbol alone and word-final
    # (so any text tokenizes, unknown words included, one symbol per byte at worst), then the
    # merged tokens in merge order.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [BOS_TOKEN, EOS_TOKEN] + alphabet + [symbol + END_OF_WORD for symbol in alphabet] + [a + b for a, b in merges]
    vocab = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def save_tokenizer(directory: Union[str, os.PathLike], model_max_length: int = MODEL_MAX_LENGTH) -> Path:
    """Train and write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json."""
    if model_max_length < 12:
        raise ValueError(f"model_max_length={model_max_length!r} is too short; the longest caption needs 12 tokens")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = train_bpe()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": model_max_length, "do_lower_case": True, **special}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return directory


def load_tokenizer(directory: Union[str, os.PathLike]):
    """The CLIPTokenizer saved in `directory` (offline)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(directory), local_files_only=True)


def build_tokenizer(directory: Union[str, os.PathLike], model_max_length: int = MODEL_MAX_LENGTH):
    """Train, save to `directory` and load back as a transformers CLIPTokenizer."""
    return load_tokenizer(save_tokenizer(directory, model_max_length))
