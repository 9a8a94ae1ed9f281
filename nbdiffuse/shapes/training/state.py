"""A run's state (training.json, and state.json in a checkpoint): what it started from, where it is.

A new run fixes its step counts and pool size here from the preset and the command line; a
resumed run reads them back, so --resume goes on with exactly the run that stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from ..model import SCHEDULER_CONFIG, Preset, get_preset
from ..text_batches import CAPTION_DROPOUT, OMIT_PROBABILITY
from .checkpoint import Checkpoint
from .progress import say


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


def new_state(args: argparse.Namespace, device: torch.device) -> dict:
    """The state of a run starting now (from scratch, or from --init's weights)."""
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
        "caption_noise": args.caption_noise,
        "pair_share": args.pair_share,
        "ema_decay": args.ema_decay,
        "train": args.train,
    }
    if args.init is not None:  # the VAE comes trained: no stage 1, and its latent scale is kept
        state.update(vae_steps=0, init=init_record(args.init),
                     scaling_factor=json.loads((args.init / "vae" / "config.json").read_text())["scaling_factor"])
    return state


def open_state(args: argparse.Namespace, device: torch.device, checkpoint: Checkpoint) -> dict:
    """The checkpoint's state with --resume, else a new one; SystemExit where the two disagree."""
    if checkpoint.exists() and not args.resume:
        raise SystemExit(f"--out={args.out} already holds a checkpoint; pass --resume to go on, or choose another --out")
    if args.resume and not checkpoint.exists():
        say(f"--resume: no checkpoint in {checkpoint.directory}, starting from scratch")
    if not checkpoint.exists():
        return new_state(args, device)
    state = checkpoint.read_state()
    if args.preset is not None and args.preset != state["preset"]:
        raise SystemExit(f"--preset={args.preset} but the checkpoint was trained with preset {state['preset']!r}")
    say(f"resuming: vae step {state['vae_step']}/{state['vae_steps']}, unet step {state['unet_step']}/{state['unet_steps']}")
    return state


def run_preset(state: dict) -> Preset:
    """The preset the run trains with: its own, with the run's --lr, --batch and --ema-decay where given."""
    preset = get_preset(state["preset"])
    if state.get("lr"):
        preset = dataclasses.replace(preset, lr=state["lr"])
    if state.get("batch"):
        preset = dataclasses.replace(preset, batch=state["batch"])
    if state.get("ema_decay"):
        preset = dataclasses.replace(preset, ema_decay=state["ema_decay"])
    return preset
