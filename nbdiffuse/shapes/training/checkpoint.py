"""DIR/checkpoint: everything a stopped run needs to go on with --resume and draw the same batches."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

if TYPE_CHECKING:
    from .models import EMA

SAVE_EVERY_S = 300  # periodic saves: a killed run loses at most this much


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {f"{index}.{key}": value for index, entries in state["state"].items() for key, value in entries.items()}
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
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
            save_tensors(module.state_dict(), self.directory / f"{name}.safetensors")
        groups = {}
        for name, optimizer in optimizers.items():
            tensors, groups[name] = _optimizer_tensors(optimizer)
            save_tensors(tensors, self.directory / f"optimizer_{name}.safetensors")
        for name, ema in emas.items():
            save_tensors({str(i): t for i, t in enumerate(ema.shadow)}, self.directory / f"ema_{name}.safetensors")
        state = dict(state, optimizer_groups=groups)
        # Write-then-rename: a run killed mid-save leaves the previous state.json intact.
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)

    def restore(self, state: dict, modules: dict[str, torch.nn.Module], optimizers: dict, emas: dict[str, EMA],
                device: torch.device) -> None:
        """What `save` wrote, into modules, optimizers and EMAs built as before."""
        for name, module in modules.items():
            self.load_module(name, module, device)
        for name, optimizer in optimizers.items():
            self.load_optimizer(name, optimizer, state, device)
        for name, ema in emas.items():
            self.load_ema(name, ema, device)

    def save_latents(self, mean: torch.Tensor, std: torch.Tensor):
        """The pool's posteriors: encoding the pool again on resume costs a minute on a CPU."""
        path = self.directory / "latents.safetensors"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            save_tensors({"mean": mean, "std": std}, path)

    def load_latents(self, device: torch.device) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        path = self.directory / "latents.safetensors"
        if not path.exists():
            return None
        tensors = load_tensors(path, device)
        return tensors["mean"], tensors["std"]

    def load_module(self, name: str, module: torch.nn.Module, device: torch.device) -> bool:
        path = self.directory / f"{name}.safetensors"
        if not path.exists():
            return False
        module.load_state_dict(load_tensors(path, device))
        return True

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer, state: dict, device: torch.device):
        path = self.directory / f"optimizer_{name}.safetensors"
        if path.exists() and name in state.get("optimizer_groups", {}):
            _load_optimizer(optimizer, load_tensors(path, device), state["optimizer_groups"][name])

    def load_ema(self, name: str, ema: EMA, device: torch.device):
        path = self.directory / f"ema_{name}.safetensors"
        if path.exists():
            tensors = load_tensors(path, device)
            ema.shadow = [tensors[str(i)] for i in range(len(ema.shadow))]


class Saver:
    """`save()` writes the run's checkpoint now; `save(periodic=True)` (after each log line) only
    when the last save is SAVE_EVERY_S old, so a killed run loses at most that much."""

    def __init__(self, checkpoint: Checkpoint, ctx: dict):
        self.checkpoint, self.ctx = checkpoint, ctx
        self.last = time.time()

    def __call__(self, periodic: bool = False) -> None:
        if periodic and time.time() - self.last < SAVE_EVERY_S:
            return
        ctx = self.ctx
        self.checkpoint.save(ctx["state"], ctx["modules"], ctx["optimizers"], ctx["emas"])
        self.last = time.time()
