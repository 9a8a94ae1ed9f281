"""What the text encoder will actually read, and notices when that differs from what was typed.

Long prompts are truncated by CLIP tokenizers (a notice, not an error). Models of nbdiffuse's
shapes world know a small grammar: unknown words are dropped before encoding, and reported,
because their byte-level tokens were never trained and would only add noise.
"""
from __future__ import annotations

from typing import Any

from .families import family_for
from .locks import TOKENIZER_LOCK
from .pipe_attrs import speaks_shapes
from .prompt_text import quiet_long_prompt_logs


def is_shapes_model(pipe: Any) -> bool:
    return speaks_shapes(pipe)


def prepare_prompt(pipe: Any, prompt: str, name: str = "prompt") -> tuple[str, list[str]]:
    """(text to encode, notices) for `prompt`."""
    notices: list[str] = []
    quiet_long_prompt_logs(pipe)  # the notice below says it once; diffusers would log the whole dropped text
    text = prompt
    if is_shapes_model(pipe) and prompt.strip():
        # Here, not at the top: only the embedded model's prompts are read by its grammar (shapes.grammar
        # imports nothing of the core, so this makes no circle).
        from ..shapes.grammar import parse_caption

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
    if not text:
        return []
    readers = family_for(pipe).text_readers()
    notices = []
    for reader, tokenizer, limit in readers:
        if not 0 < limit < 100_000:
            continue
        with TOKENIZER_LOCK:
            ids = tokenizer(text, truncation=False, add_special_tokens=True).input_ids
            if len(ids) <= limit:
                continue
            content = tokenizer(text, truncation=False, add_special_tokens=False).input_ids
            special = len(ids) - len(content)
            kept = tokenizer.decode(content[:limit - special], skip_special_tokens=True).strip()
        dropped = text[len(kept):].strip() if text.startswith(kept) else ""
        tail = f"; dropped: {dropped[:80]!r}" if dropped else ""
        notices.append(f"{name} is {len(ids)} tokens but {reader} reads {limit}: it was truncated{tail}")
    return notices
