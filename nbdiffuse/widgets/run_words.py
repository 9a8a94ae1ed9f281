"""Runs in words: a run's settings, and what differs between two runs.

The run tree labels each run by what differs from its parent (a branch) or from the run made
before it (a new run), and compare's captions say what differs between A and B: both come from
`differences`, so one run is never described two ways.
"""
from __future__ import annotations

import difflib
from typing import Any

from .live_run import guidance_segments

SHORT = 28  # characters of a prompt kept in a label
PROMPT_REWRITE = 0.5  # below this word-similarity a changed prompt is shown whole, not as changed words


def short(text: Any, n: int = SHORT) -> str:
    text = str(text) if text is not None else ""
    return text if len(text) <= n else text[: n - 1] + "…"


def guidance_words(schedule: Any, since: int = 0) -> str:
    """'5' for one value from step `since` on; '5, 2 from step 11' where it changed (steps counted from 1)."""
    parts = guidance_segments(list(schedule or [])[since:])
    if not parts:
        return "?"
    words = f"{parts[0][1]:g}" + "".join(f", {w:g} from step {k + since + 1}" for k, w in parts[1:3])
    return words + (", …" if len(parts) > 3 else "")


def prompt_change(old: str, new: str) -> tuple[str, str]:
    """The words that differ between two prompts (each side's), or both prompts shortened when most words differ."""
    a, b = (old or "").split(), (new or "").split()
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    if matcher.ratio() < PROMPT_REWRITE:
        return short(old) or "(empty)", short(new) or "(empty)"
    olds, news = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            olds.append(" ".join(a[i1:i2]))
            news.append(" ".join(b[j1:j2]))
    join = lambda chunks: short(" … ".join(c for c in chunks if c))  # noqa: E731
    return join(olds), join(news)


def _size(p: dict) -> str:
    return f"{p.get('width')}×{p.get('height')}"


def _start(p: dict) -> str:  # "from noise" / "from a picture"
    return "a picture" if p.get("image") else "noise"


def differences(old: dict, new: dict, since: int = 0) -> list[tuple[str, str, str]]:
    """(setting, old value, new value) in words for each setting of two runs' params that differs.

    since: compare guidance from this step on (a branch shares its parent's guidance before it).
    """
    out: list[tuple[str, str, str]] = []

    def add(label: str, a: Any, b: Any) -> None:
        if a != b:
            out.append((label, a, b))

    models = [str(p.get("model") or p.get("pipeline")) for p in (old, new)]
    if models[0] != models[1]:  # checkpoints often differ at the end of their path: keep the end
        out.append(("model", *(m if len(m) <= SHORT else "…" + m[1 - SHORT:] for m in models)))
    for key, label in (("prompt", "prompt"), ("negative_prompt", "negative")):
        if (old.get(key) or "") != (new.get(key) or ""):
            out.append((label, *prompt_change(old.get(key) or "", new.get(key) or "")))
    add("seed", str(old.get("seed")), str(new.get("seed")))
    add("guidance", guidance_words(old.get("guidance"), since), guidance_words(new.get("guidance"), since))
    add("steps", str(old.get("steps")), str(new.get("steps")))
    add("sampler", str(old.get("scheduler")), str(new.get("scheduler")))
    add("size", _size(old), _size(new))
    if old.get("pag") or new.get("pag"):  # perturbed-attention guidance (core/pag.py): its scale
        add("PAG", _pag(old, since), _pag(new, since))
    add("from", _start(old), _start(new))
    if old.get("image") and new.get("image"):
        if old.get("image") != new.get("image"):
            out.append(("start picture", "one", "another"))
        add("strength", f"{old.get('strength') or 0:g}", f"{new.get('strength') or 0:g}")
    return out


def _pag(p: dict, since: int = 0) -> str:
    """'3', '3, 0 from step 12' (changed within the run, as guidance), '3 (adaptive 0.01)'."""
    pag = p.get("pag") or {}
    scale = guidance_words(pag["scales"], since) if pag.get("scales") else f"{pag.get('scale', 0):g}"
    return scale + (f" (adaptive {pag['adaptive_scale']:g})" if pag.get("adaptive_scale") else "")


def change_words(diffs: list[tuple[str, str, str]]) -> str:
    """'seed 0 → 3, guidance 5 → 8, prompt green → purple' ('prompt +red' / 'prompt −red': words added / removed)."""
    parts = []
    for label, a, b in diffs:
        if label in ("prompt", "negative") and not a:
            parts.append(f"{label} +{b}")
        elif label in ("prompt", "negative") and not b:
            parts.append(f"{label} −{a}")
        elif label == "start picture":
            parts.append("another start picture")
        else:  # a guidance that changed within a run reads "5, 2 from step 11": kept apart from the list
            a, b = (f"({v})" if ", " in v else v for v in (a, b))
            parts.append(f"{label} {a} → {b}")
    return ", ".join(parts)


def side_words(diffs: list[tuple[str, str, str]], side: int) -> str:
    """One run's own values of the settings that differ, joined by ' · ' (side 0: the old/A run, 1: the new/B run)."""
    parts = []
    for label, *values in diffs:
        mine, theirs = values[side], values[1 - side]
        if label in ("prompt", "negative") and not mine:
            parts.append(f"{label} without “{theirs}”")
        elif label in ("prompt", "negative"):
            parts.append(f"{label} “{mine}”")
        elif label == "start picture":
            parts.append("a different start picture")
        else:
            parts.append(f"{label} {mine}")
    return " · ".join(parts) or "same settings"


def settings_words(p: dict) -> str:
    """Every setting of a run, one line each: for a tooltip."""
    lines = [f"prompt: {p.get('prompt', '')}"]
    if p.get("negative_prompt"):
        lines.append(f"negative: {p['negative_prompt']}")
    lines.append(f"seed {p.get('seed')} · guidance {guidance_words(p.get('guidance'))} · {p.get('steps')} steps · "
                 f"{p.get('scheduler')} · {_size(p)}")
    if p.get("pag"):
        lines.append(f"PAG {_pag(p)} on {', '.join(p['pag']['layers'])}")
    if p.get("image"):
        lines.append(f"from a picture at strength {p.get('strength') or 0:g}")
    if p.get("model") or p.get("pipeline"):
        lines.append(f"model: {p.get('model') or p.get('pipeline')}")
    return "\n".join(lines)


def brief_settings(p: dict) -> str:
    """'seed 0, guidance 5, 30 steps, euler': a first run's label."""
    guidance = guidance_words(p.get("guidance")) + (f", PAG {_pag(p)}" if p.get("pag") else "")
    return f"seed {p.get('seed')}, guidance {guidance}, {p.get('steps')} steps, {p.get('scheduler')}"
