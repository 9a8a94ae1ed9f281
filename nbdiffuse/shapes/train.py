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

This module is the command line and the order of a run; the parts live in nbdiffuse/shapes/training/
(state, models, data, loops, checkpoint, export, report).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from .model import PRESETS, Preset, build_scheduler
from .render import noise_rates
from .tokenizer import build_tokenizer, load_tokenizer
from .training.checkpoint import Checkpoint, Saver
from .training.data import render_images
from .training.export import evaluate_pipeline, export_pipeline
from .training.loops import train_stages
from .training.models import TRAINED_PARTS, build_modules, build_optimizers, freeze_untrained
from .training.progress import Deadline, say
from .training.report import hardware, portable_argv, size_of, write_report
from .training.state import open_state, run_preset


# ----------------------------------------------------------------------------- the command line


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="decay of the weights' moving average that is shipped (default: the preset's). A "
                             "fine-tune of a few hundred steps wants a shorter average than the preset's 0.9995")
    parser.add_argument("--caption-noise", type=_caption_noise, default=None,
                        help="share of each attribute named wrong in training captions (default 0), one for all "
                             "(0.03) or per attribute (shape=0.05,size=0.05): the noisy captions real models learn "
                             "from, which make classifier-free guidance matter (see nbdiffuse/shapes/model/TRAINING.md)")
    parser.add_argument("--pair-share", type=float, default=None,
                        help="share of each UNet batch drawn from pictures of a black object on white or a white "
                             "one on black (default 0: as the pool holds them, about 1 in 12): the captions whose "
                             "two colours only word order tells apart")
    parser.add_argument("--train", choices=TRAINED_PARTS, default=None,
                        help="what learns in the UNet stage (default all: the text encoder and the UNet). "
                             "conditioning: the text encoder and the UNet's cross-attention keys and values only, "
                             "the rest of the UNet (how pictures are drawn) kept as --init made it; text: the text "
                             "encoder only")
    parser.add_argument("--text-workers", type=int, default=None,
                        help="processes making caption batches ahead (default: 0 on CPU, up to 12 on a GPU)")
    parser.add_argument("--unet-minutes", type=float, default=None,
                        help="fit the UNet stage's step count to this many minutes, from its measured speed")
    parser.add_argument("--resume", action="store_true", help="go on from OUT/checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 on CPU, torch's default otherwise)")
    parser.add_argument("--eval-samples", type=int, default=None, help="prompts scored at the end (default: the preset's)")
    parser.add_argument("--keep-checkpoint", action="store_true", help="keep OUT/checkpoint after a complete run")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked: a bad value stops here, naming its option, before any work."""
    parser = _parser()
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
    if args.ema_decay is not None and not 0 < args.ema_decay < 1:
        parser.error(f"--ema-decay={args.ema_decay} must be above 0 and below 1, e.g. 0.995")
    if args.pair_share is not None and not 0 <= args.pair_share <= 1:
        parser.error(f"--pair-share={args.pair_share} must be a share from 0 to 1, e.g. 0.2")
    if args.t_min is not None and not 0 <= args.t_min <= 999:
        parser.error(f"--t-min={args.t_min} must be a timestep from 0 to 999")
    if args.init is not None and not (args.init / "model_index.json").exists():
        parser.error(f"--init={args.init} is not a pipeline folder (no model_index.json)")
    if args.train not in (None, "all") and args.init is None and not args.resume:
        parser.error(f"--train={args.train} fine-tunes part of a trained model: pass --init with it")
    if args.init is not None and args.resume:
        parser.error("--init starts a new run; --resume goes on with one: pass one of them")
    if args.unet_minutes is not None and args.unet_minutes <= 0:
        parser.error(f"--unet-minutes={args.unet_minutes} must be > 0")
    return args


def _caption_noise(text: str):
    """--caption-noise: one rate ("0.03") or rates per attribute ("shape=0.05,size=0.05")."""
    try:
        if "=" not in text:
            noise = float(text)
        else:
            noise = {field.strip(): float(rate) for field, rate in (part.split("=", 1) for part in text.split(","))}
        if not noise_rates(noise):
            return 0.0  # "shape=0": no noise, as a run without the option
    except ValueError as error:
        detail = str(error) if str(error).startswith("caption noise") else "not a number"
        raise argparse.ArgumentTypeError(f"{text!r}: {detail}; give one share for every attribute (0.03) "
                                         "or attribute=share pairs (shape=0.05,size=0.05)") from None
    return noise


# ----------------------------------------------------------------------------- a run, in order


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


def _setup_device(args: argparse.Namespace) -> torch.device:
    """The device, and torch's settings for it: one CPU thread unless --threads says otherwise."""
    device = _device(args.device)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    return device


def _prepare(args: argparse.Namespace, state: dict, preset: Preset, device: torch.device,
             checkpoint: Checkpoint) -> dict:
    """The run's context (what the stages and the export read): tokenizer, modules, optimizers and
    EMA (restored from the checkpoint when resuming), the rendered pool, the noise schedule."""
    tokenizer_dir = checkpoint.directory / "tokenizer"
    if args.init is not None and not (tokenizer_dir / "vocab.json").exists():
        shutil.copytree(args.init / "tokenizer", tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir) if (tokenizer_dir / "vocab.json").exists() else build_tokenizer(tokenizer_dir)
    modules = build_modules(preset, tokenizer, device, args.init, state["scaling_factor"])
    freeze_untrained(modules, state.get("train") or "all")
    optimizers, emas = build_optimizers(preset, modules)
    if checkpoint.exists():
        checkpoint.restore(state, modules, optimizers, emas, device)
    pool_captions, pool_images = render_images(state, device)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return {
        "state": state,
        "preset": preset,
        "device": device,
        "tokenizer": tokenizer,
        "tokenizer_dir": tokenizer_dir,
        **modules,
        "modules": modules,
        "optimizers": optimizers,
        "emas": emas,
        "pool_captions": pool_captions,
        "pool_images": pool_images,
        "alphas_cumprod": build_scheduler().alphas_cumprod.to(device=device, dtype=torch.float32),
        # bf16 autocast on GPUs that have it; full fp32 elsewhere (CPU autocast is slower here).
        "autocast": (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16
        else (lambda: torch.autocast("cpu", enabled=False)),
        "unet_minutes": args.unet_minutes,
        "init_folder": args.init,
    }


def _text_workers(args: argparse.Namespace, device: torch.device) -> int:
    """Processes making caption batches ahead: --text-workers, else none on a CPU and up to 12 beside a GPU."""
    if args.text_workers is not None:
        return args.text_workers
    return max(1, min(12, (os.cpu_count() or 1) - 2)) if device.type == "cuda" else 0


def _finish(ctx: dict, args: argparse.Namespace, checkpoint: Checkpoint, save: Saver, finished: bool,
            run_start: float) -> None:
    """Export the pipeline (a stopped run's too: DIR is always usable), score it, write the report;
    drop the checkpoint of a complete run, save that of a stopped one."""
    state, out = ctx["state"], args.out
    tick = time.time()
    state["complete"] = bool(finished)
    pipeline = export_pipeline(ctx, out)
    eval_samples = ctx["preset"].eval_samples if args.eval_samples is None else args.eval_samples
    if finished and eval_samples > 0:
        say(f"scoring {eval_samples} generated images")
        state["adherence"] = evaluate_pipeline(pipeline, eval_samples, state["seed"], ctx["device"])
        say("adherence:", json.dumps(state["adherence"]))
    state["seconds"]["export"] += time.time() - tick
    state["size_mb"] = size_of(out) / 1e6
    run = state["runs"][-1]
    run["seconds"] = time.time() - run_start
    write_report(out, state)
    if finished and not args.keep_checkpoint:
        # The checkpoint (optimizer state included) is 4x the model; it is not part of what ships.
        shutil.rmtree(checkpoint.directory, ignore_errors=True)
    else:
        save()
    say(
        ("done" if finished else "stopped; go on with --resume")
        + f": {out} ({state['size_mb']:.2f} MB), this run {run['seconds'] / 60:.1f} min"
    )


def main(argv=None) -> dict:
    """Train (or go on training) into --out; returns the run's state (what training.json holds)."""
    args = parse_args(argv)
    run_start = time.time()
    deadline = Deadline(args.max_minutes)
    device = _setup_device(args)
    checkpoint = Checkpoint(args.out / "checkpoint")
    state = open_state(args, device, checkpoint)
    preset = run_preset(state)
    run = {"argv": portable_argv(list(sys.argv[1:] if argv is None else argv)),
           "started": datetime.datetime.now().isoformat(timespec="seconds"), "hardware": hardware(device)}
    state["runs"].append(run)
    torch.manual_seed(state["seed"])
    say(f"preset {preset.name} on {device} ({run['hardware'].get('gpu', run['hardware']['processor'])}), out {args.out}")

    tick = time.time()
    ctx = _prepare(args, state, preset, device, checkpoint)
    state["seconds"]["setup"] += time.time() - tick
    save = Saver(checkpoint, ctx)
    finished = train_stages(ctx, checkpoint, deadline, save, _text_workers(args, device))
    _finish(ctx, args, checkpoint, save, finished, run_start)
    return state


if __name__ == "__main__":
    main()
