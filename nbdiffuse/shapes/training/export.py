"""What a run ships: the diffusers folder with the EMA weights, and how well its pictures follow captions."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from ..approx import write_shapes_approx
from ..distil_tiny import write_shapes_tiny
from ..grammar import random_caption
from ..model import build_pipeline, build_scheduler
from .models import EMA

QUICK_APPROX_BELOW = 100  # UNet steps: a shorter run (a smoke test) gets a rough approx decoder fit in seconds


def _ema_copy(module: torch.nn.Module, ema: EMA, offset: int) -> tuple[torch.nn.Module, int]:
    """A CPU copy of `module` with the EMA weights (ema.shadow[offset:] in parameter order)."""
    copied = copy.deepcopy(module).to("cpu").float().eval()
    parameters = list(copied.parameters())
    with torch.no_grad():
        for parameter, shadow in zip(parameters, ema.shadow[offset : offset + len(parameters)]):
            parameter.copy_(shadow.float().cpu())
    return copied, offset + len(parameters)


def _kept_tiny_decoder(ctx: dict, out: Path):
    """The --init model's tiny decoder folder where this run kept that model's VAE (no VAE stage),
    else None. It was distilled from that very VAE (the shipped one over 20000 steps), which a
    3000-step distillation here would only approximate worse. A fine-tuned UNet still makes other
    mid-run latents: the shipped guidance fine-tune moved the kept decoder's held-out object colour
    error from 8.4 to 10.5 of 255, so its decoder was adapted after (`distil_tiny --init`, README).
    A resumed run (no --init folder now) keeps the copy its first start wrote into `out` when it stopped."""
    from ...core.loading import TINY_FOLDER

    if not ctx["state"].get("init") or ctx["state"].get("vae_steps"):
        return None
    init = ctx.get("init_folder")
    folder = (out if init is None else Path(init)) / TINY_FOLDER
    return folder if folder.is_dir() else None


def export_pipeline(ctx: dict, out: Path):
    """Write the diffusers folder (EMA weights, safetensors) and the tokenizer's vocab/merges files."""
    unet, offset = _ema_copy(ctx["unet"], ctx["emas"]["unet"], 0)
    text_encoder, _ = _ema_copy(ctx["text_encoder"], ctx["emas"]["unet"], offset)
    vae = copy.deepcopy(ctx["vae"]).to("cpu").float().eval()
    pipeline = build_pipeline(vae, text_encoder, ctx["tokenizer"], unet, build_scheduler())
    pipeline.save_pretrained(str(out), safe_serialization=True)
    # transformers saves only tokenizer.json; the issue asks for the files CLIPTokenizer is built
    # from (vocab.json + merges.txt), so ship exactly the trained ones instead.
    tokenizer_dir = out / "tokenizer"
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    shutil.copytree(ctx["tokenizer_dir"], tokenizer_dir)
    quick = ctx["state"]["unet_steps"] < QUICK_APPROX_BELOW
    write_shapes_approx(pipeline, out, quick=quick)
    kept = _kept_tiny_decoder(ctx, out)
    if kept is not None:  # the VAE is the --init model's, unchanged: so is the decoder distilled from it
        from ...core.loading import TINY_FOLDER

        if kept.resolve() != (out / TINY_FOLDER).resolve():
            shutil.rmtree(out / TINY_FOLDER, ignore_errors=True)
            shutil.copytree(kept, out / TINY_FOLDER)
    else:
        write_shapes_tiny(pipeline, out, quick=quick)  # the Explorer's frames: distilled from this VAE
    return pipeline


def evaluate_pipeline(pipeline, count: int, seed: int, device: torch.device) -> dict:
    """Generate `count` images for random prompts (some attributes left out) and score them."""
    from ..evaluate import adherence

    prompts = [random_caption(np.random.default_rng([seed, 3, i]), omit=0.2).text() for i in range(count)]
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    images = []
    for start in range(0, count, 32):
        chunk = prompts[start : start + 32]
        generator = [torch.Generator(device="cpu").manual_seed(seed + start + i) for i in range(len(chunk))]
        images += pipeline(chunk, num_inference_steps=25, guidance_scale=5.0, generator=generator).images
    result = adherence(images, prompts)
    result.update(prompts=count, steps=25, guidance=5.0)
    return result
