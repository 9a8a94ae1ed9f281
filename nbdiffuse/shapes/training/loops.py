"""The two stages of training, and the two in order.

Stage 1 trains the VAE on rendered images (MSE + an edge term + a small KL) and sets its
scaling_factor to 1 / std of the latents. Stage 2 trains the CLIP text encoder and the UNet
together on the latents of the same images, epsilon prediction on the noise schedule of the
Euler scheduler that ships with the model. Each stage returns True when it is finished, False
when the deadline stopped it; both go on from the step in `state`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..model import Preset
from .checkpoint import Checkpoint
from .data import encode_pool, text_batches, torch_generator, UNetBatches, vae_batch
from .models import unet_stage_parameters
from .progress import LOG_EVERY, Deadline, log_losses, say

KL_WEIGHT = 1e-7  # on the summed KL per image; just enough to keep the latent scale in check
EDGE_WEIGHT = 1.0  # extra MSE on image gradients: shapes are all edges, plain MSE blurs them
FIT_AFTER = 200  # --unet-minutes: the step count is fitted to the budget after this many UNet steps,
FIT_FROM = 100  # timed from this step on (the first steps pay for worker start-up and kernel choice)

Save = Callable[..., None]  # checkpoint.Saver: save(periodic=False)


def learning_rate(preset: Preset, step: int, total: int) -> float:
    """Linear warmup (at most a fifth of the run: short fine-tunes), then cosine down to 10% of the peak."""
    warmup = min(preset.warmup, max(1, total // 5))
    if step < warmup:
        return preset.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return preset.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def edge_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.mse_loss(dx(a), dx(b)) + F.mse_loss(dy(a), dy(b))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _vae_step(ctx: dict, step: int, lr: float) -> float:
    vae, optimizer = ctx["vae"], ctx["optimizers"]["vae"]
    images, generator = vae_batch(ctx, step)
    _set_lr(optimizer, lr)
    with ctx["autocast"]():
        posterior = vae.encode(images).latent_dist
        latents = posterior.sample(generator=generator)
        recon = vae.decode(latents).sample.float()
    loss = F.mse_loss(recon, images) + EDGE_WEIGHT * edge_mse(recon, images) + KL_WEIGHT * posterior.kl().float().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def train_vae(ctx: dict, deadline: Deadline, save: Save) -> bool:
    """Stage 1. Returns True when the stage is finished, False when the deadline stopped it."""
    state, preset = ctx["state"], ctx["preset"]
    total = state["vae_steps"]
    ctx["vae"].train()
    losses, tick = [], time.time()
    while state["vae_step"] < total:
        step = state["vae_step"]
        lr = preset.vae_lr * min(1.0, (step + 1) / preset.warmup)
        losses.append(_vae_step(ctx, step, lr))
        state["vae_step"] = step + 1
        if state["vae_step"] % LOG_EVERY == 0 or state["vae_step"] == total:
            elapsed = time.time() - tick
            state["seconds"]["vae"] += elapsed
            log_losses(state, "vae", state["vae_step"], total, losses, elapsed / len(losses), lr)
            losses, tick = [], time.time()
            save(periodic=True)
        if deadline.passed():
            break
    state["seconds"]["vae"] += time.time() - tick
    return state["vae_step"] >= total


def fit_steps(state: dict, preset: Preset, minutes: float, stage_began: float, timed_steps: int, seconds: float) -> int:
    """The UNet step count that ends the stage `minutes` after it began, at the measured speed
    (at most the preset's count, at least the steps already made)."""
    per_step = seconds / max(1, timed_steps)
    left = stage_began + minutes * 60 - time.time()
    fitted = max(state["unet_step"], min(preset.unet_steps, state["unet_step"] + int(left / per_step)))
    state["fitted"] = {"unet_minutes": minutes, "seconds_per_step": round(per_step, 5), "unet_steps": fitted}
    return fitted


class StepFit:
    """--unet-minutes: times steps FIT_FROM..FIT_AFTER of this run, then fits the stage's step count
    (and so the learning-rate schedule, still in its warmup then) to the budget: a GPU's speed is
    measured, not guessed. A resumed run keeps the fitted count."""

    def __init__(self, ctx: dict):
        state = ctx["state"]
        self.minutes = ctx.get("unet_minutes")
        self.active = self.minutes is not None and "fitted" not in state
        self.first_step, self.stage_began, self.timing_began = state["unet_step"], time.time(), 0.0

    def after_step(self, ctx: dict) -> Optional[int]:
        """The fitted step count once it is known (once), else None."""
        state = ctx["state"]
        made = state["unet_step"] - self.first_step
        if self.active and made == FIT_FROM:
            self.timing_began = time.time()
        if not (self.active and made == FIT_AFTER):
            return None
        self.active = False
        total = state["unet_steps"] = fit_steps(state, ctx["preset"], self.minutes, self.stage_began,
                                                FIT_AFTER - FIT_FROM, time.time() - self.timing_began)
        say(f"[unet] {state['fitted']['seconds_per_step']:.4f} s/step: {total} steps fit in {self.minutes} min")
        return total


def _unet_step(ctx: dict, parameters: list, batch: tuple, lr: float) -> torch.Tensor:
    """One optimizer step of the text encoder + UNet on epsilon prediction; the loss stays on the device."""
    optimizer, unet, text_encoder = ctx["optimizers"]["unet"], ctx["unet"], ctx["text_encoder"]
    input_ids, noisy, timesteps, noise = batch
    _set_lr(optimizer, lr)
    with ctx["autocast"]():
        hidden = text_encoder(input_ids)[0]
        prediction = unet(noisy, timesteps, hidden).sample.float()
    loss = F.mse_loss(prediction, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    return loss.detach()


def _finite_mean(losses: list[torch.Tensor], step: int) -> float:
    mean = float(torch.stack(losses).mean())
    if not math.isfinite(mean):  # stop before a periodic save keeps poisoned weights
        raise RuntimeError(f"the UNet loss became {mean} by step {step}; resume from the "
                           "last checkpoint (--resume), or start again with a lower --lr")
    return mean


def train_unet(ctx: dict, deadline: Deadline, save: Save) -> bool:
    """Stage 2: text encoder + UNet, jointly. Returns True when finished (see StepFit for --unet-minutes).
    Losses are read every LOG_EVERY steps only, so a GPU is never waited for in between."""
    state, preset, ema = ctx["state"], ctx["preset"], ctx["emas"]["unet"]
    total = state["unet_steps"]
    parameters = unet_stage_parameters(ctx["modules"])
    ctx["unet"].train()
    ctx["text_encoder"].train()
    batches, fit = UNetBatches(ctx), StepFit(ctx)
    losses, tick, logged = [], time.time(), state["unet_step"]
    while state["unet_step"] < total:
        step = state["unet_step"]
        lr = learning_rate(preset, step, total)
        losses.append(_unet_step(ctx, parameters, batches.get(step), lr))
        ema.update(step)
        state["unet_step"] = step + 1
        total = fit.after_step(ctx) or total
        if state["unet_step"] % LOG_EVERY == 0 or state["unet_step"] == total:
            elapsed = time.time() - tick
            state["seconds"]["unet"] += elapsed
            mean = _finite_mean(losses, state["unet_step"])
            log_losses(state, "unet", state["unet_step"], total, [mean], elapsed / (state["unet_step"] - logged), lr)
            losses, tick, logged = [], time.time(), state["unet_step"]
            save(periodic=True)
        if deadline.passed():
            break
    state["seconds"]["unet"] += time.time() - tick
    return state["unet_step"] >= total


def _set_latent_scale(ctx: dict, checkpoint: Checkpoint, save: Save) -> None:
    """After stage 1: 1 / std of sampled latents, so the UNet sees unit-variance data, as in Stable Diffusion."""
    state, device, vae = ctx["state"], ctx["device"], ctx["vae"]
    means, stds = encode_pool(ctx)
    latents = means + stds * torch.randn(means.shape, generator=torch_generator(device, state["seed"], 3, 0),
                                         device=device)
    state["scaling_factor"] = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=state["scaling_factor"])
    ctx["latent_mean"], ctx["latent_std"] = means, stds
    say(f"[vae] done; latent std {latents.std().item():.4f} -> scaling_factor {state['scaling_factor']:.4f}")
    save()
    checkpoint.save_latents(means, stds)


def train_stages(ctx: dict, checkpoint: Checkpoint, deadline: Deadline, save: Save, text_workers: int) -> bool:
    """Stage 1, the latent scale, then stage 2, each from where `state` says; True when both are done."""
    state = ctx["state"]
    finished = state["vae_step"] >= state["vae_steps"] or train_vae(ctx, deadline, save)
    if finished and state["scaling_factor"] is None:
        _set_latent_scale(ctx, checkpoint, save)
    if not finished or deadline.passed():
        return False
    if "latent_mean" not in ctx:
        began = time.time()
        ctx["latent_mean"], ctx["latent_std"] = checkpoint.load_latents(ctx["device"]) or encode_pool(ctx)
        say(f"pool latents ready in {time.time() - began:.1f} s")
    ctx["text_batches"] = text_batches(ctx, text_workers)
    try:
        return state["unet_step"] >= state["unet_steps"] or train_unet(ctx, deadline, save)
    finally:
        ctx["text_batches"].close()
