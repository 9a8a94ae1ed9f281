"""The modules a run trains (the preset's VAE, CLIP text encoder and UNet), their optimizers and EMA."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from .. import model as architecture
from ..model import Preset
from .checkpoint import load_tensors


class EMA:
    """Exponential moving average of parameters; the shipped weights are the averaged ones.
    The decay ramps up from 0, so short runs are not dominated by the random initialization."""

    def __init__(self, parameters, decay: float):
        self.parameters = list(parameters)
        self.shadow = [p.detach().clone() for p in self.parameters]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int):
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], 1.0 - decay)


def build_modules(preset: Preset, tokenizer, device: torch.device, init: Optional[Path],
                  scaling_factor: Optional[float]) -> dict[str, torch.nn.Module]:
    """{"vae", "text_encoder", "unet"} of `preset` on `device`: fresh (from torch's seed), or
    --init's weights; the VAE's latent scale set where it is known already."""
    vae = architecture.build_vae(preset).to(device)
    with torch.no_grad():
        # Start the posterior std at e^-3 instead of 1: with std-1 noise on fresh latents the
        # decoder first learns to ignore them (measured on CPU: MSE 0.061 vs 0.091 after 200 steps).
        vae.quant_conv.bias[vae.config.latent_channels :] = -6.0
    text_encoder = architecture.build_text_encoder(preset, tokenizer).to(device)
    unet = architecture.build_unet(preset).to(device)
    if init is not None:
        load_weights(init, vae, text_encoder, unet, device)
    if scaling_factor is not None:
        vae.register_to_config(scaling_factor=scaling_factor)
    return {"vae": vae, "text_encoder": text_encoder, "unet": unet}


def load_weights(folder: Path, vae, text_encoder, unet, device: torch.device) -> None:
    """The weights of a shapes pipeline folder, into modules built from the same preset (strict)."""
    files = {vae: "vae/diffusion_pytorch_model.safetensors", text_encoder: "text_encoder/model.safetensors",
             unet: "unet/diffusion_pytorch_model.safetensors"}
    for module, name in files.items():
        try:
            module.load_state_dict(load_tensors(folder / name, device))
        except (RuntimeError, FileNotFoundError) as exc:
            raise SystemExit(f"--init={folder}: {name} does not fit this preset's {type(module).__name__} "
                             f"({str(exc).splitlines()[0][:200]}); pass the --preset it was trained with") from None


TRAINED_PARTS = ("all", "conditioning", "text")


def freeze_untrained(modules: dict[str, torch.nn.Module], part: str) -> None:
    """--train: all of the text encoder and UNet learn, or only the text encoder ("text"), or the
    text encoder and the UNet's cross-attention keys and values ("conditioning": how the UNet reads
    the caption, the rest of it kept). Frozen weights get no gradient; the optimizer and the EMA
    pass over them unchanged, so the shipped folder keeps them bit for bit."""
    if part not in TRAINED_PARTS:
        raise ValueError(f"train={part!r} is not one of {', '.join(TRAINED_PARTS)}")
    if part == "all":
        return
    for name, parameter in modules["unet"].named_parameters():
        reads_caption = ".attn2.to_k." in name or ".attn2.to_v." in name
        parameter.requires_grad_(part == "conditioning" and reads_caption)


def unet_stage_parameters(modules: dict[str, torch.nn.Module]) -> list[torch.nn.Parameter]:
    """Stage 2 trains the text encoder and the UNet together: one optimizer, one EMA (in this order)."""
    return list(modules["unet"].parameters()) + list(modules["text_encoder"].parameters())


def build_optimizers(preset: Preset, modules: dict[str, torch.nn.Module]) -> tuple[dict, dict[str, EMA]]:
    """AdamW per stage, and the EMA of stage 2's weights (what ships)."""
    optimizers = {
        "vae": torch.optim.AdamW(modules["vae"].parameters(), lr=preset.vae_lr),
        "unet": torch.optim.AdamW(unet_stage_parameters(modules), lr=preset.lr),
    }
    emas = {"unet": EMA(unet_stage_parameters(modules), preset.ema_decay)}
    return optimizers, emas
