"""What the text encoder will actually read, and notices when that differs from what was typed.

Long prompts are truncated by CLIP tokenizers (a notice, not an error). Models of nbdiffuse's
shapes world know a small grammar: unknown words are dropped before encoding, and reported,
because their byte-level tokens were never trained and would only add noise.
"""
from __future__ import annotations

from typing import Any


def is_shapes_model(pipe: Any) -> bool:
    return bool(getattr(pipe, "_nbd_shapes", False))


def prepare_prompt(pipe: Any, prompt: str, name: str = "prompt") -> tuple[str, list[str]]:
    """(text to encode, notices) for `prompt`."""
    notices: list[str] = []
    text = prompt
    if is_shapes_model(pipe) and prompt.strip():
        from ..shapes import parse_caption

        try:
            caption = parse_caption(prompt)
        except ValueError as exc:
            raise ValueError(f"{name} {prompt!r}: {exc}") from exc
        if caption.unknown_words:
            notices.append(f"{name}: unknown words ignored: {', '.join(caption.unknown_words)} "
                           "(see nbd.shapes.VOCABULARY)")
        text = caption.text()
    notices += _truncation(pipe, text, name)
    return text, notices


def _truncation(pipe: Any, text: str, name: str) -> list[str]:
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None or not text:
        return []
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if not 0 < limit < 100_000:
        return []
    ids = tokenizer(text, truncation=False, add_special_tokens=True).input_ids
    if len(ids) <= limit:
        return []
    kept = tokenizer.decode(ids[1:limit - 1], skip_special_tokens=True)
    dropped = text[len(kept):].strip() if text.startswith(kept) else ""
    tail = f"; dropped: {dropped[:80]!r}" if dropped else ""
    return [f"{name} is {len(ids)} tokens but the text encoder reads {limit}: it was truncated{tail}"]
