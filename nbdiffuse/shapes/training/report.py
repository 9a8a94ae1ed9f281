"""The record a run leaves beside the model: training.json (its state) and TRAINING.md (for people)."""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch

from ..render import noise_rates


_TRAINED = {"conditioning": "the text encoder and the UNet's cross-attention keys and values",
            "text": "the text encoder"}


def hardware(device: torch.device) -> dict:
    """Where a run ran, with the versions that matter for reproducing it."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    import diffusers
    import transformers

    info["diffusers"] = diffusers.__version__
    info["transformers"] = transformers.__version__
    return info


def portable_argv(argv: list[str]) -> list[str]:
    """The command line as recorded in shipped files: the output folder is written as DIR."""
    out = []
    for i, arg in enumerate(argv):
        out.append("DIR" if i > 0 and argv[i - 1] == "--out" else "--out=DIR" if arg.startswith("--out=") else arg)
    return out


def size_of(directory: Path, exclude: str = "checkpoint") -> int:
    return sum(
        p.stat().st_size for p in directory.rglob("*") if p.is_file() and exclude not in p.relative_to(directory).parts
    )


def _summary(state: dict) -> list[str]:
    preset, seconds = state["preset"], state["seconds"]
    return [
        f"- status: {'complete' if state['complete'] else 'stopped early, resume with --resume'}",
        f"- command: `python -m nbdiffuse.shapes.train {' '.join(state['runs'][0]['argv'])}`",
        f"- preset: {preset}, seed: {state['seed']}, pool of {state['pool_size']} rendered images",
        f"- VAE: {state['vae_step']}/{state['vae_steps']} steps in {seconds['vae'] / 60:.1f} min"
        + (f" ({seconds['vae'] / max(1, state['vae_step']):.3f} s/step)" if state["vae_step"] else ""),
        f"- text encoder + UNet: {state['unet_step']}/{state['unet_steps']} steps in {seconds['unet'] / 60:.1f} min"
        + (f" ({seconds['unet'] / max(1, state['unet_step']):.3f} s/step)" if state["unet_step"] else ""),
        f"- latent scaling_factor: {state.get('scaling_factor')}",
        *([f"- started from (--init): {state['init']['folder']}, trained with preset {state['init'].get('preset')}, "
           f"{state['init'].get('unet_steps')} UNet steps"] if state.get("init") else []),
        *([f"- UNet peak learning rate: {state['lr']} (--lr)"] if state.get("lr") else []),
        *([f"- UNet batch: {state['batch']} (--batch)"] if state.get("batch") else []),
        *([f"- offset noise: {state['offset_noise']} (--offset-noise)"] if state.get("offset_noise") else []),
        *([f"- UNet timesteps: {state['t_min']}..999 (--t-min)"] if state.get("t_min") else []),
        *([f"- EMA decay: {state['ema_decay']} (--ema-decay)"] if state.get("ema_decay") else []),
        *([f"- caption noise: {_noise_words(state['caption_noise'])} (--caption-noise)"]
          if state.get("caption_noise") else []),
        *([f"- black/white pairs: {state['pair_share']:.0%} of each UNet batch (--pair-share)"]
          if state.get("pair_share") else []),
        *([f"- trained: {_TRAINED[state['train']]} (--train {state['train']}); the rest kept from --init"]
          if state.get("train") not in (None, "all") else []),
        f"- shipped size: {state.get('size_mb', 0):.2f} MB",
    ]


def _runs_and_losses(state: dict) -> list[str]:
    lines = ["## Runs", ""]
    for run in state["runs"]:
        hw = run["hardware"]
        where = hw.get("gpu", hw["processor"]) + f", {hw['cpu_count']} CPUs, {hw['torch_threads']} torch threads"
        lines.append(f"- {run['started']}: {run.get('seconds', 0) / 60:.1f} min on {where} "
                     f"(torch {hw['torch']}, {hw['platform']})")
    for stage in ("vae", "unet"):
        curve = state["losses"][stage]
        if curve:
            picks = curve[:: max(1, len(curve) // 12)]
            picks += [curve[-1]] if picks[-1] != curve[-1] else []
            lines += ["", f"## Loss, {stage}", "", " ".join(f"{step}:{loss:.4f}" for step, loss in picks)]
    return lines


def _noise_words(noise) -> str:
    """'each attribute named wrong in 3% of captions' or 'shape named wrong in 5% ..., size in 5%'."""
    rates = noise_rates(noise)
    if len(rates) == 5 and len(set(rates.values())) == 1:
        return f"each attribute named wrong in {next(iter(rates.values())):.0%} of captions"
    first, *rest = rates.items()
    return ", ".join([f"{first[0]} named wrong in {first[1]:.0%} of captions"] + [f"{f} in {r:.0%}" for f, r in rest])


def _noisy_captions(state: dict) -> list[str]:
    """Why the captions were noisy, for a teacher reading TRAINING.md."""
    rates = noise_rates(state["caption_noise"])
    rate = max(rates.values())
    return ["", "## Why the captions are noisy (--caption-noise)", "",
            f"Training captions name attributes wrong: {_noise_words(state['caption_noise'])}. The wrong "
            "attribute is replaced by another value of the grammar (the colour rule kept), while "
            "the picture stays as rendered. On top, as before, each attribute is left out with probability "
            f"{state.get('omit_probability', 0.25):g} and {state.get('caption_dropout', 0.1):.0%} of captions are "
            "empty (the unconditional prompt classifier-free guidance needs).",
            "",
            "Real text-to-image models learn from web captions that often say something the picture does not show. "
            "What such a model learns for a caption is a blurred p(x | caption): mostly the right picture, sometimes "
            "another. Sampling it unguided (guidance 1) reproduces the blur, so a share of the pictures miss. "
            "Classifier-free guidance at scale w samples as if from p(x | caption) · (p(x | caption) / p(x))^(w - 1): "
            "what the caption makes more likely than no caption at all wins, so guided runs hit. "
            "Pushed far past that (guidance 20) the "
            "extrapolated prediction leaves the pictures the model knows: colours shift past the palette and edges "
            "ring. With perfect captions the model needed no guidance, and a learner could not see any of this.",
            "",
            f"The rates: about {1 - math.prod(1 - r for r in rates.values()):.0%} of full captions carry at least "
            "one wrong attribute, which sets the unguided misses; in that idealised picture guidance w weighs a "
            "right value against one wrong one by ((1 - r)(n - 1) / r)^w for an attribute of n values "
            f"({((1 - rate) / rate) ** 5:.0e} at w = 5 for an attribute of two values named wrong {rate:g} of the "
            "time), so guided runs hit.",
            *(["", "Only some attributes are named wrong. Guidance takes a wrong shape or background back almost "
               "always, but a wrong colour, place or size less often: a fine-tune naming every attribute wrong 3% "
               "of the time kept colour 0.950 and position 0.965 at guidance 5 (the clean model: 0.975 and 0.995), "
               "one naming the size wrong 5% of the time kept size 0.970. Noise on those would cost guided runs "
               "what the lesson needs them to keep."]
              if len(rates) < 5 else [])]


def _pairs(state: dict) -> list[str]:
    """Why black/white pairs were drawn more often, for a teacher reading TRAINING.md."""
    return ["", "## Why black and white pairs are drawn more often (--pair-share)", "",
            f"{state['pair_share']:.0%} of each UNet batch are pictures of a black object on white or a white one "
            "on black (the pool holds about 1 in 12). Such captions name the same two colours in swapped roles; "
            "only the word order says which is the object (\"black star, white background\"), so a text encoder "
            "has one difference to learn from few examples. The embedded model trained on clean captions "
            "(2026-11-23) drew 27 of 80 such captions swapped at guidance 5, and none of 240 with other pairs of "
            "colours."]


def write_report(out: Path, state: dict):
    (out / "training.json").write_text(json.dumps({k: v for k, v in state.items() if k != "optimizer_groups"}, indent=1))
    lines = ["# Training of the embedded shapes model", "", *_summary(state), "", *_runs_and_losses(state)]
    if state.get("caption_noise"):
        lines += _noisy_captions(state)
    if state.get("pair_share"):
        lines += _pairs(state)
    if state.get("adherence"):
        lines += ["", "## Adherence (nbdiffuse.shapes.evaluate)", ""]
        lines += [f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in state["adherence"].items()]
    before = (state.get("init") or {}).get("report")
    if before:  # the record of the model this run started from, so the shipped file tells the whole story
        lines += ["", "## The model this run started from (--init)", ""]
        lines += ["#" + line if line.startswith("#") else line for line in before.splitlines()[1:]]
    (out / "TRAINING.md").write_text("\n".join(lines) + "\n")
