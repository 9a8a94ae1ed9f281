"""Train the shapes model: `python -m nbdiffuse.shapes.train --out DIR [--preset gpu|cpu]`.

Stage 1 trains the VAE on rendered images (MSE + an edge term + a small KL) and sets its
scaling_factor to 1 / std of the latents. Stage 2 trains the CLIP text encoder and the UNet
together on the latents of the same images, epsilon prediction on the noise schedule of the
Euler scheduler that ships with the model, with 10% of captions dropped to "" so classifier-free
guidance works.

Runs are resumable: `--max-minutes` stops cleanly (checkpoint in DIR/checkpoint, plus a usable
pipeline folder in DIR), `--resume` goes on from there. Randomness is derived from
(seed, stage, step), so a resumed run draws the same batches as an unbroken one.
The output DIR is a diffusers StableDiffusionPipeline folder with TRAINING.md / training.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .grammar import random_caption
from .approx import write_shapes_approx
from .distil_tiny import write_shapes_tiny
from .model import PRESETS, SCHEDULER_CONFIG, Preset, build_pipeline, build_scheduler, build_text_encoder, build_unet, build_vae, get_preset
from .render import render_pool
from .text_batches import CAPTION_DROPOUT, OMIT_PROBABILITY, TextBatches
from .tokenizer import build_tokenizer, load_tokenizer

KL_WEIGHT = 1e-7  # on the summed KL per image; just enough to keep the latent scale in check
EDGE_WEIGHT = 1.0  # extra MSE on image gradients: shapes are all edges, plain MSE blurs them
LOG_EVERY = 25
QUICK_APPROX_BELOW = 100  # UNet steps: a shorter run (a smoke test) gets a rough approx decoder fit in seconds
SAVE_RESERVE_S = 30  # stop this long before --max-minutes is up, to leave time for saving
FIT_AFTER = 200  # --unet-minutes: the step count is fitted to the budget after this many UNet steps,
FIT_FROM = 100  # timed from this step on (the first steps pay for worker start-up and kernel choice)


# ----------------------------------------------------------------------------- small helpers


def _say(*parts):
    print(f"[{datetime.datetime.now():%H:%M:%S}]", *parts, flush=True)


def _rng(seed: int, stage: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage, step])


def _torch_generator(device: torch.device, seed: int, stage: int, step: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(_rng(seed, stage, step).integers(2**62)))
    return generator


def _hardware(device: torch.device) -> dict:
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


def _learning_rate(preset: Preset, step: int, total: int) -> float:
    """Linear warmup (at most a fifth of the run: short fine-tunes), then cosine down to 10% of the peak."""
    warmup = min(preset.warmup, max(1, total // 5))
    if step < warmup:
        return preset.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return preset.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ----------------------------------------------------------------------------- checkpoints


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def _load_tensors(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {f"{index}.{key}": value for index, entries in state["state"].items() for key, value in entries.items()}
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list):
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


class Checkpoint:
    """DIR/checkpoint: state.json + one safetensors file per model / optimizer / EMA."""

    def __init__(self, directory: Path):
        self.directory = directory

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def exists(self) -> bool:
        return self.state_path.exists()

    def read_state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def save(self, state: dict, modules: dict[str, torch.nn.Module], optimizers: dict, emas: dict[str, EMA]):
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, module in modules.items():
            _save_tensors(module.state_dict(), self.directory / f"{name}.safetensors")
        groups = {}
        for name, optimizer in optimizers.items():
            tensors, groups[name] = _optimizer_tensors(optimizer)
            _save_tensors(tensors, self.directory / f"optimizer_{name}.safetensors")
        for name, ema in emas.items():
            _save_tensors({str(i): t for i, t in enumerate(ema.shadow)}, self.directory / f"ema_{name}.safetensors")
        state = dict(state, optimizer_groups=groups)
        # Write-then-rename: a run killed mid-save leaves the previous state.json intact.
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)

    def save_latents(self, mean: torch.Tensor, std: torch.Tensor):
        """The pool's posteriors: encoding the pool again on resume costs a minute on a CPU."""
        path = self.directory / "latents.safetensors"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            _save_tensors({"mean": mean, "std": std}, path)

    def load_latents(self, device: torch.device) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        path = self.directory / "latents.safetensors"
        if not path.exists():
            return None
        tensors = _load_tensors(path, device)
        return tensors["mean"], tensors["std"]

    def load_module(self, name: str, module: torch.nn.Module, device: torch.device) -> bool:
        path = self.directory / f"{name}.safetensors"
        if not path.exists():
            return False
        module.load_state_dict(_load_tensors(path, device))
        return True

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer, state: dict, device: torch.device):
        path = self.directory / f"optimizer_{name}.safetensors"
        if path.exists() and name in state.get("optimizer_groups", {}):
            _load_optimizer(optimizer, _load_tensors(path, device), state["optimizer_groups"][name])

    def load_ema(self, name: str, ema: EMA, device: torch.device):
        path = self.directory / f"ema_{name}.safetensors"
        if path.exists():
            tensors = _load_tensors(path, device)
            ema.shadow = [tensors[str(i)] for i in range(len(ema.shadow))]


# ----------------------------------------------------------------------------- the stages


class Deadline:
    def __init__(self, max_minutes: Optional[float]):
        self.start = time.time()
        self.end = None if max_minutes is None else self.start + max_minutes * 60 - SAVE_RESERVE_S

    def passed(self) -> bool:
        return self.end is not None and time.time() > self.end


def _log(state: dict, stage: str, step: int, total: int, losses: list[float], seconds_per_step: float, lr: float):
    loss = float(np.mean(losses))
    state["losses"][stage].append([step, round(loss, 6)])
    eta = (total - step) * seconds_per_step / 60
    _say(f"[{stage}] step {step}/{total} loss {loss:.4f} lr {lr:.1e} {seconds_per_step:.3f} s/step eta {eta:.1f} min")


def _edge_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.mse_loss(dx(a), dx(b)) + F.mse_loss(dy(a), dy(b))


def train_vae(ctx: dict, deadline: Deadline, save) -> bool:
    """Stage 1. Returns True when the stage is finished, False when the deadline stopped it."""
    state, preset, device, vae, pool = ctx["state"], ctx["preset"], ctx["device"], ctx["vae"], ctx["pool_images"]
    optimizer = ctx["optimizers"]["vae"]
    total, seed = state["vae_steps"], state["seed"]
    vae.train()
    losses, tick = [], time.time()
    while state["vae_step"] < total:
        step = state["vae_step"]
        rng = _rng(seed, 1, step)
        index = torch.from_numpy(rng.integers(len(pool), size=preset.vae_batch)).to(device)
        images = pool[index].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        lr = preset.vae_lr * min(1.0, (step + 1) / preset.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with ctx["autocast"]():
            posterior = vae.encode(images).latent_dist
            latents = posterior.sample(generator=_torch_generator(device, seed, 1, step))
            recon = vae.decode(latents).sample.float()
        loss = F.mse_loss(recon, images) + EDGE_WEIGHT * _edge_mse(recon, images) + KL_WEIGHT * posterior.kl().float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        state["vae_step"] = step + 1
        if state["vae_step"] % LOG_EVERY == 0 or state["vae_step"] == total:
            elapsed = time.time() - tick
            state["seconds"]["vae"] += elapsed
            _log(state, "vae", state["vae_step"], total, losses, elapsed / len(losses), lr)
            losses, tick = [], time.time()
            save(periodic=True)
        if deadline.passed():
            break
    state["seconds"]["vae"] += time.time() - tick
    return state["vae_step"] >= total


@torch.no_grad()
def encode_pool(ctx: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every pool image (stage 2 samples latents from them)."""
    vae, pool = ctx["vae"], ctx["pool_images"]
    vae.eval()
    means, stds = [], []
    for start in range(0, len(pool), 256):
        images = pool[start : start + 256].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        with ctx["autocast"]():
            posterior = vae.encode(images).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    # Contiguous (the VAE may hand back channels-last): a resumed run reads these from disk in
    # contiguous layout, and the UNet's convolutions round differently for the two layouts.
    return torch.cat(means).contiguous(), torch.cat(stds).contiguous()


def fit_steps(state: dict, preset: Preset, minutes: float, stage_began: float, timed_steps: int, seconds: float) -> int:
    """The UNet step count that ends the stage `minutes` after it began, at the measured speed
    (at most the preset's count, at least the steps already made)."""
    per_step = seconds / max(1, timed_steps)
    left = stage_began + minutes * 60 - time.time()
    fitted = max(state["unet_step"], min(preset.unet_steps, state["unet_step"] + int(left / per_step)))
    state["fitted"] = {"unet_minutes": minutes, "seconds_per_step": round(per_step, 5), "unet_steps": fitted}
    return fitted


def train_unet(ctx: dict, deadline: Deadline, save) -> bool:
    """Stage 2: text encoder + UNet, jointly. Returns True when finished.

    With ctx["unet_minutes"], the step count (and so the learning-rate schedule, which is still
    in its warmup then) is fitted to that budget after FIT_AFTER steps: a GPU's speed is measured,
    not guessed. A resumed run keeps the fitted count."""
    state, preset, device = ctx["state"], ctx["preset"], ctx["device"]
    unet, text_encoder = ctx["unet"], ctx["text_encoder"]
    optimizer, ema = ctx["optimizers"]["unet"], ctx["emas"]["unet"]
    means, stds = ctx["latent_mean"], ctx["latent_std"]
    scaling = ctx["vae"].config.scaling_factor
    alphas_cumprod = ctx["alphas_cumprod"]
    total, seed = state["unet_steps"], state["seed"]
    offset, t_min = state.get("offset_noise") or 0.0, state.get("t_min") or 0
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    unet.train()
    text_encoder.train()
    losses, tick = [], time.time()
    stage_began = time.time()
    first_step = logged = state["unet_step"]
    fit = ctx.get("unet_minutes") is not None and "fitted" not in state
    # No host-device synchronization per step on a GPU (pinned non-blocking copies in, losses
    # read every LOG_EVERY steps), so the host queues the next step while the GPU runs this one.
    pinned = device.type == "cuda"

    def to_device(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor.pin_memory().to(device, non_blocking=True) if pinned else tensor.to(device)

    while state["unet_step"] < total:
        step = state["unet_step"]
        index, ids = ctx["text_batches"].get(step)
        input_ids, index_t = to_device(ids), to_device(index)
        generator = _torch_generator(device, seed, 2, step)
        shape = (preset.batch, *means.shape[1:])
        latents = (means[index_t] + stds[index_t] * torch.randn(shape, generator=generator, device=device)) * scaling
        noise = torch.randn(shape, generator=generator, device=device)
        if offset:  # offset noise: a random shift per image and channel, so that x_t's mean says little
            noise = noise + offset * torch.randn((preset.batch, shape[1], 1, 1), generator=generator, device=device)
        timesteps = torch.randint(t_min, len(alphas_cumprod), (preset.batch,), generator=generator, device=device)
        a = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise

        lr = _learning_rate(preset, step, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with ctx["autocast"]():
            hidden = text_encoder(input_ids)[0]
            prediction = unet(noisy, timesteps, hidden).sample.float()
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        ema.update(step)
        losses.append(loss.detach())
        state["unet_step"] = step + 1
        if fit and state["unet_step"] - first_step == FIT_FROM:
            fit_began = time.time()
        if fit and state["unet_step"] - first_step == FIT_AFTER:
            fit = False
            total = state["unet_steps"] = fit_steps(state, preset, ctx["unet_minutes"], stage_began,
                                                    FIT_AFTER - FIT_FROM, time.time() - fit_began)
            _say(f"[unet] {state['fitted']['seconds_per_step']:.4f} s/step: {total} steps fit in {ctx['unet_minutes']} min")
        if state["unet_step"] % LOG_EVERY == 0 or state["unet_step"] == total:
            elapsed = time.time() - tick
            state["seconds"]["unet"] += elapsed
            mean = float(torch.stack(losses).mean())
            if not math.isfinite(mean):  # stop before a periodic save keeps poisoned weights
                raise RuntimeError(f"the UNet loss became {mean} by step {state['unet_step']}; resume from the "
                                   "last checkpoint (--resume), or start again with a lower --lr")
            _log(state, "unet", state["unet_step"], total, [mean], elapsed / (state["unet_step"] - logged), lr)
            losses, tick, logged = [], time.time(), state["unet_step"]
            save(periodic=True)
        if deadline.passed():
            break
    state["seconds"]["unet"] += time.time() - tick
    return state["unet_step"] >= total


# ----------------------------------------------------------------------------- export


def _ema_copy(module: torch.nn.Module, ema: EMA, offset: int) -> tuple[torch.nn.Module, int]:
    """A CPU copy of `module` with the EMA weights (ema.shadow[offset:] in parameter order)."""
    copied = copy.deepcopy(module).to("cpu").float().eval()
    parameters = list(copied.parameters())
    with torch.no_grad():
        for parameter, shadow in zip(parameters, ema.shadow[offset : offset + len(parameters)]):
            parameter.copy_(shadow.float().cpu())
    return copied, offset + len(parameters)


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
    write_shapes_tiny(pipeline, out, quick=quick)  # the Explorer's frames: distilled from this VAE
    return pipeline


def evaluate_pipeline(pipeline, count: int, seed: int, device: torch.device) -> dict:
    """Generate `count` images for random prompts (some attributes left out) and score them."""
    from .evaluate import adherence

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


def size_of(directory: Path, exclude: str = "checkpoint") -> int:
    return sum(
        p.stat().st_size for p in directory.rglob("*") if p.is_file() and exclude not in p.relative_to(directory).parts
    )


def write_report(out: Path, state: dict):
    (out / "training.json").write_text(json.dumps({k: v for k, v in state.items() if k != "optimizer_groups"}, indent=1))
    preset, seconds = state["preset"], state["seconds"]
    lines = [
        "# Training of the embedded shapes model",
        "",
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
        f"- shipped size: {state.get('size_mb', 0):.2f} MB",
        "",
        "## Runs",
        "",
    ]
    for run in state["runs"]:
        hw = run["hardware"]
        where = hw.get("gpu", hw["processor"]) + f", {hw['cpu_count']} CPUs, {hw['torch_threads']} torch threads"
        lines.append(f"- {run['started']}: {run.get('seconds', 0) / 60:.1f} min on {where} (torch {hw['torch']}, {hw['platform']})")
    for stage in ("vae", "unet"):
        curve = state["losses"][stage]
        if curve:
            picks = curve[:: max(1, len(curve) // 12)]
            picks += [curve[-1]] if picks[-1] != curve[-1] else []
            lines += ["", f"## Loss, {stage}", "", " ".join(f"{s}:{l:.4f}" for s, l in picks)]
    if state.get("adherence"):
        lines += ["", "## Adherence (nbdiffuse.shapes.evaluate)", ""]
        lines += [f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in state["adherence"].items()]
    before = (state.get("init") or {}).get("report")
    if before:  # the record of the model this run started from, so the shipped file tells the whole story
        lines += ["", "## The model this run started from (--init)", ""]
        lines += ["#" + line if line.startswith("#") else line for line in before.splitlines()[1:]]
    (out / "TRAINING.md").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- main


def _portable_argv(argv: list[str]) -> list[str]:
    """The command line as recorded in shipped files: the output folder is written as DIR."""
    out = []
    for i, arg in enumerate(argv):
        out.append("DIR" if i > 0 and argv[i - 1] == "--out" else "--out=DIR" if arg.startswith("--out=") else arg)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nbdiffuse.shapes.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output pipeline folder (checkpoint in OUT/checkpoint)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: gpu when CUDA is available, else cpu")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on the steps of each stage (smoke tests)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long; go on with --resume")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from a model this script trained (a pipeline folder of the same preset): "
                             "its VAE is kept, the text encoder and UNet train on")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of the UNet stage (default: the preset's)")
    parser.add_argument("--batch", type=int, default=None, help="UNet-stage batch size (default: the preset's)")
    parser.add_argument("--pool-size", type=int, default=None, help="images rendered for training (default: the preset's)")
    parser.add_argument("--offset-noise", type=float, default=None,
                        help="std of a per-image, per-channel shift added to the UNet stage's noise (default 0). "
                             "Without it a model reads the picture's brightness from the starting noise's mean "
                             "(a white background drawn black when that mean is dark)")
    parser.add_argument("--t-min", type=int, default=None,
                        help="train the UNet on timesteps t_min..999 only (a fine-tune of the noisiest steps, "
                             "where background and layout are decided; default 0)")
    parser.add_argument("--text-workers", type=int, default=None,
                        help="processes making caption batches ahead (default: 0 on CPU, up to 12 on a GPU)")
    parser.add_argument("--unet-minutes", type=float, default=None,
                        help="fit the UNet stage's step count to this many minutes, from its measured speed")
    parser.add_argument("--resume", action="store_true", help="go on from OUT/checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU, torch's default otherwise)")
    parser.add_argument("--eval-samples", type=int, default=None, help="prompts scored at the end (default: the preset's)")
    parser.add_argument("--keep-checkpoint", action="store_true", help="keep OUT/checkpoint after a complete run")
    args = parser.parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps={args.max_steps} must be >= 1")
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error(f"--max-minutes={args.max_minutes} must be > 0")
    if args.lr is not None and not args.lr > 0:
        parser.error(f"--lr={args.lr} must be > 0")
    for name in ("batch", "pool_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.offset_noise is not None and not 0 <= args.offset_noise <= 1:
        parser.error(f"--offset-noise={args.offset_noise} must be between 0 and 1")
    if args.t_min is not None and not 0 <= args.t_min <= 999:
        parser.error(f"--t-min={args.t_min} must be a timestep from 0 to 999")
    if args.init is not None and not (args.init / "model_index.json").exists():
        parser.error(f"--init={args.init} is not a pipeline folder (no model_index.json)")
    if args.init is not None and args.resume:
        parser.error("--init starts a new run; --resume goes on with one: pass one of them")
    if args.unet_minutes is not None and args.unet_minutes <= 0:
        parser.error(f"--unet-minutes={args.unet_minutes} must be > 0")
    return args


def init_record(folder: Path) -> dict:
    """What a run started with --init started from: the folder's name and its own training record."""
    record = {"folder": folder.name}
    report = folder / "training.json"
    if report.exists():
        trained = json.loads(report.read_text())
        record.update({k: trained.get(k) for k in ("preset", "seed", "vae_steps", "unet_steps", "adherence")})
        record["runs"] = [run.get("started") for run in trained.get("runs", [])]
    if (folder / "TRAINING.md").exists():
        record["report"] = (folder / "TRAINING.md").read_text()
    return record


def load_weights(folder: Path, vae, text_encoder, unet, device: torch.device) -> None:
    """The weights of a shapes pipeline folder, into modules built from the same preset (strict)."""
    files = {vae: "vae/diffusion_pytorch_model.safetensors", text_encoder: "text_encoder/model.safetensors",
             unet: "unet/diffusion_pytorch_model.safetensors"}
    for module, name in files.items():
        try:
            module.load_state_dict(_load_tensors(folder / name, device))
        except (RuntimeError, FileNotFoundError) as exc:
            raise SystemExit(f"--init={folder}: {name} does not fit this preset's {type(module).__name__} "
                             f"({str(exc).splitlines()[0][:200]}); pass the --preset it was trained with") from None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a torch device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use --device cpu")
    return device


def main(argv=None) -> dict:
    args = parse_args(argv)
    run_start = time.time()
    deadline = Deadline(args.max_minutes)
    device = _device(args.device)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    out: Path = args.out
    checkpoint = Checkpoint(out / "checkpoint")

    if checkpoint.exists() and not args.resume:
        raise SystemExit(f"--out={out} already holds a checkpoint; pass --resume to go on, or choose another --out")
    if args.resume and not checkpoint.exists():
        _say(f"--resume: no checkpoint in {checkpoint.directory}, starting from scratch")
    if checkpoint.exists():
        state = checkpoint.read_state()
        if args.preset is not None and args.preset != state["preset"]:
            raise SystemExit(f"--preset={args.preset} but the checkpoint was trained with preset {state['preset']!r}")
        _say(f"resuming: vae step {state['vae_step']}/{state['vae_steps']}, unet step {state['unet_step']}/{state['unet_steps']}")
    else:
        preset_name = args.preset or ("gpu" if device.type == "cuda" else "cpu")
        preset = get_preset(preset_name)
        if args.batch is not None:
            preset = dataclasses.replace(preset, batch=args.batch)
        if args.pool_size is not None:
            preset = dataclasses.replace(preset, pool_size=args.pool_size)
        cap = args.max_steps or max(preset.vae_steps, preset.unet_steps)
        vae_steps, unet_steps = min(preset.vae_steps, cap), min(preset.unet_steps, cap)
        # Short runs need fewer images than the preset's pool; rendering it would dominate them.
        pool_size = min(preset.pool_size, max(256, unet_steps * preset.batch, vae_steps * preset.vae_batch))
        state = {
            "preset": preset_name,
            "seed": args.seed,
            "vae_steps": vae_steps,
            "unet_steps": unet_steps,
            "pool_size": pool_size,
            "vae_step": 0,
            "unet_step": 0,
            "scaling_factor": None,
            "complete": False,
            "seconds": {"setup": 0.0, "vae": 0.0, "unet": 0.0, "export": 0.0},
            "losses": {"vae": [], "unet": []},
            "runs": [],
            "scheduler": SCHEDULER_CONFIG,
            "caption_dropout": CAPTION_DROPOUT,
            "omit_probability": OMIT_PROBABILITY,
            "lr": args.lr,
            "batch": args.batch,
            "offset_noise": args.offset_noise,
            "t_min": args.t_min,
        }
        if args.init is not None:  # the VAE comes trained: no stage 1, and its latent scale is kept
            state.update(vae_steps=0, init=init_record(args.init),
                         scaling_factor=json.loads((args.init / "vae" / "config.json").read_text())["scaling_factor"])
    preset = get_preset(state["preset"])
    if state.get("lr"):
        preset = dataclasses.replace(preset, lr=state["lr"])
    if state.get("batch"):
        preset = dataclasses.replace(preset, batch=state["batch"])
    run = {"argv": _portable_argv(list(sys.argv[1:] if argv is None else argv)), "started": datetime.datetime.now().isoformat(timespec="seconds"), "hardware": _hardware(device)}
    state["runs"].append(run)
    torch.manual_seed(state["seed"])
    _say(f"preset {preset.name} on {device} ({run['hardware'].get('gpu', run['hardware']['processor'])}), out {out}")

    tick = time.time()
    tokenizer_dir = checkpoint.directory / "tokenizer"
    if args.init is not None and not (tokenizer_dir / "vocab.json").exists():
        shutil.copytree(args.init / "tokenizer", tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir) if (tokenizer_dir / "vocab.json").exists() else build_tokenizer(tokenizer_dir)
    if device.type == "cuda" and args.text_workers is None:
        args.text_workers = max(1, min(12, (os.cpu_count() or 1) - 2))
    vae = build_vae(preset).to(device)
    with torch.no_grad():
        # Start the posterior std at e^-3 instead of 1: with std-1 noise on fresh latents the
        # decoder first learns to ignore them (measured on CPU: MSE 0.061 vs 0.091 after 200 steps).
        vae.quant_conv.bias[vae.config.latent_channels :] = -6.0
    text_encoder = build_text_encoder(preset, tokenizer).to(device)
    unet = build_unet(preset).to(device)
    if args.init is not None:
        load_weights(args.init, vae, text_encoder, unet, device)
    if state["scaling_factor"] is not None:
        vae.register_to_config(scaling_factor=state["scaling_factor"])
    optimizers = {
        "vae": torch.optim.AdamW(vae.parameters(), lr=preset.vae_lr),
        "unet": torch.optim.AdamW(list(unet.parameters()) + list(text_encoder.parameters()), lr=preset.lr),
    }
    emas = {"unet": EMA(list(unet.parameters()) + list(text_encoder.parameters()), preset.ema_decay)}
    modules = {"vae": vae, "text_encoder": text_encoder, "unet": unet}
    if checkpoint.exists():
        for name, module in modules.items():
            checkpoint.load_module(name, module, device)
        for name, optimizer in optimizers.items():
            checkpoint.load_optimizer(name, optimizer, state, device)
        checkpoint.load_ema("unet", emas["unet"], device)

    _say(f"rendering a pool of {state['pool_size']} images")
    began = time.time()
    pool_captions, pool_images = render_pool(state["pool_size"], seed=state["seed"])
    _say(f"pool rendered in {time.time() - began:.1f} s")
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    ctx = {
        "state": state,
        "preset": preset,
        "device": device,
        "tokenizer": tokenizer,
        "tokenizer_dir": tokenizer_dir,
        "vae": vae,
        "text_encoder": text_encoder,
        "unet": unet,
        "optimizers": optimizers,
        "emas": emas,
        "pool_captions": pool_captions,
        "pool_images": torch.from_numpy(pool_images).to(device),
        "alphas_cumprod": build_scheduler().alphas_cumprod.to(device=device, dtype=torch.float32),
        # bf16 autocast on GPUs that have it; full fp32 elsewhere (CPU autocast is slower here).
        "autocast": (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else (lambda: torch.autocast("cpu", enabled=False)),
        "unet_minutes": args.unet_minutes,
    }
    state["seconds"]["setup"] += time.time() - tick
    last_save = [time.time()]

    def save(periodic: bool = False):
        # Periodic saves every 5 minutes: a killed run loses at most that much.
        if periodic and time.time() - last_save[0] < 300:
            return
        checkpoint.save(state, modules, optimizers, emas)
        last_save[0] = time.time()

    finished = state["vae_step"] >= state["vae_steps"] or train_vae(ctx, deadline, save)
    if finished and state["scaling_factor"] is None:
        means, stds = encode_pool(ctx)
        # 1 / std of sampled latents, so the UNet sees unit-variance data, as in Stable Diffusion.
        latents = means + stds * torch.randn(means.shape, generator=_torch_generator(device, state["seed"], 3, 0), device=device)
        state["scaling_factor"] = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        ctx["latent_mean"], ctx["latent_std"] = means, stds
        _say(f"[vae] done; latent std {latents.std().item():.4f} -> scaling_factor {state['scaling_factor']:.4f}")
        save()
        checkpoint.save_latents(means, stds)
    if finished and not deadline.passed():
        began = time.time()
        if "latent_mean" not in ctx:
            ctx["latent_mean"], ctx["latent_std"] = checkpoint.load_latents(device) or encode_pool(ctx)
            _say(f"pool latents ready in {time.time() - began:.1f} s")
        began = time.time()
        ctx["text_batches"] = TextBatches(pool_captions, tokenizer, tokenizer_dir, state["seed"], preset.batch,
                                          workers=args.text_workers or 0)
        ctx["text_batches"].prefetch(state["unet_step"])
        _say(f"caption batches ready in {time.time() - began:.1f} s ({args.text_workers or 0} worker processes)")
        try:
            finished = state["unet_step"] >= state["unet_steps"] or train_unet(ctx, deadline, save)
        finally:
            ctx["text_batches"].close()
    else:
        finished = False

    tick = time.time()
    state["complete"] = bool(finished)
    pipeline = export_pipeline(ctx, out)
    eval_samples = preset.eval_samples if args.eval_samples is None else args.eval_samples
    if finished and eval_samples > 0:
        _say(f"scoring {eval_samples} generated images")
        state["adherence"] = evaluate_pipeline(pipeline, eval_samples, state["seed"], device)
        _say("adherence:", json.dumps(state["adherence"]))
    state["seconds"]["export"] += time.time() - tick
    state["size_mb"] = size_of(out) / 1e6
    run["seconds"] = time.time() - run_start
    write_report(out, state)
    if finished and not args.keep_checkpoint:
        # The checkpoint (optimizer state included) is 4x the model; it is not part of what ships.
        shutil.rmtree(checkpoint.directory, ignore_errors=True)
    else:
        checkpoint.save(state, modules, optimizers, emas)
    _say(
        ("done" if finished else "stopped; go on with --resume")
        + f": {out} ({state['size_mb']:.2f} MB), this run {run['seconds'] / 60:.1f} min"
    )
    return state


if __name__ == "__main__":
    main()
