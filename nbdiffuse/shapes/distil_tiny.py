"""Distil the embedded model's tiny decoder from its own VAE: `python -m nbdiffuse.shapes.distil_tiny`.

The teacher is the shipped VAE's decoder; the data are the latents live frames will actually show:
x0 predictions and noisy latents x_t at every step of the model's own runs (captions of every
kind, guidance 1-12, several samplers), plus latents of rendered pictures and noise around them.
The student (core/tiny_decoder.py) learns the teacher's pictures at the output size with an L1 loss;
--object-weight W counts the pixels of the object (those far from the picture's background) 1 + W
times, so that the small part of the picture a learner looks at keeps its colour. --init starts from
a saved decoder (a model fine-tuned from the shipped one starts from the shipped decoder).
Held-out runs (other captions and seeds) give the figures TRAINING.md and the README state: mean
absolute error against decoder="full" over all steps (x0 and x_t views), and the object's colour in
the second half of each run (the median colour inside the object, the largest channel difference
of 255). A CPU run of minutes; benchmarks/tiny_decoder.py times a frame next to a guided step.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SCHEDULERS = ("euler", "euler", "dpmpp_2m", "ddim", "euler_a")


def run_latents(pipe: Any, runs: int, seed: int, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 latents, x_t latents) of every step of `runs` runs of the model: what live frames show."""
    from ..core.trace import trace
    from .grammar import random_caption

    x0, xt = [], []
    rng = np.random.default_rng(seed)
    for i in range(runs):
        caption = random_caption(seed=seed + i, omit=0.3).text()
        traj = trace(pipe, caption, steps=steps, guidance=float(rng.choice([1, 2, 3, 5, 7.5, 12])),
                     seed=seed + i, scheduler=SCHEDULERS[i % len(SCHEDULERS)])
        x0.append(torch.stack([traj.latents_for(k, "x0").float() for k in range(len(traj))]))
        xt.append(torch.stack([traj.latents_for(k, "xt").float() for k in range(len(traj))]))
    return torch.cat(x0), torch.cat(xt)


def render_latents(pipe: Any, count: int, seed: int) -> torch.Tensor:
    """Latents of rendered pictures of the shapes world (the clean end of every run)."""
    from ..core.decode import to_pipeline_space
    from .grammar import random_caption
    from .render import render_array, to_tensor

    captions = [random_caption(seed=seed + i) for i in range(count)]
    pixels = to_tensor(render_array(captions, [seed + i for i in range(count)]))
    param = next(pipe.vae.parameters())
    with torch.no_grad():
        return torch.cat([to_pipeline_space(pipe.vae, pipe.vae.encode(chunk.to(param.device, param.dtype))
                                             .latent_dist.mean.float()).cpu() for chunk in pixels.split(64)])


def teacher(vae: Any, latents: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The VAE's pictures of pipeline-space latents, in [-1, 1] (what decoder="full" shows)."""
    from ..core.decode import from_pipeline_space

    param = next(vae.parameters())
    with torch.no_grad():
        return torch.cat([vae.decode(from_pipeline_space(vae, chunk.to(param.device, param.dtype)),
                                     return_dict=False)[0].float().clamp(-1, 1).cpu() for chunk in latents.split(batch)])


def object_mask(pictures: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """(N, 1, H, W) True where a [-1, 1] picture's colour is far from its background: the median of
    its border pixels, summed absolute difference over RGB above `threshold` (0.6: 77 of 255)."""
    border = torch.cat([pictures[:, :, 0], pictures[:, :, -1], pictures[:, :, :, 0], pictures[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    return (pictures - background).abs().sum(1, keepdim=True) > threshold


def object_colour_errors(student: Any, latents: torch.Tensor, target: torch.Tensor) -> list[float]:
    """For each picture with an object: the largest channel difference (of 255) between the median
    colours the student and the teacher give the object's inside (its mask, one pixel eroded: the
    outline may move). Pictures whose inside has fewer than 8 pixels are skipped."""
    with torch.no_grad():
        made = as_uint8(torch.cat([student.decode(chunk, return_dict=False)[0] for chunk in latents.split(256)]))
    mask = object_mask(target)[:, 0]
    inside = mask.clone()
    for shift, dim in ((1, 1), (-1, 1), (1, 2), (-1, 2)):
        inside &= mask.roll(shift, dim)
    truth, errors = as_uint8(target), []
    for i in range(len(latents)):
        if int(inside[i].sum()) >= 8:
            made_colour = made[i][:, inside[i]].median(dim=1).values
            true_colour = truth[i][:, inside[i]].median(dim=1).values
            errors.append(float((made_colour - true_colour).abs().max()))
    return errors


def as_uint8(pictures: torch.Tensor) -> torch.Tensor:
    """[-1, 1] pictures rounded to 0..255 as decode.to_pil rounds them."""
    return ((pictures.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor()


def mean_error(student: Any, latents: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error of 255 between the student's and the teacher's 8-bit pictures."""
    with torch.no_grad():
        made = torch.cat([student.decode(chunk, return_dict=False)[0] for chunk in latents.split(256)])
    return float((as_uint8(made) - as_uint8(target)).abs().mean())


def grid_excess(student: Any, latents: torch.Tensor, target: torch.Tensor) -> float:
    """How much a patch-sized grid shows: the student's error in the difference between neighbouring
    pixels (against the teacher's) across the edges of its patches, over that error inside them. 1.0
    is no grid; a decoder that draws each latent pixel as a block on its own reads well above."""
    with torch.no_grad():
        made = torch.cat([student.decode(chunk, return_dict=False)[0] for chunk in latents.split(256)])
    made, truth, patch = as_uint8(made), as_uint8(target), student.upscale
    across, inside = [], []
    for dim in (2, 3):
        error = (made.diff(dim=dim) - truth.diff(dim=dim)).abs().movedim(dim, 0)  # rows (or columns) first
        edge = (torch.arange(error.shape[0]) + 1) % patch == 0  # between pixel j and j + 1 a patch ends
        across.append(error[edge].mean())
        inside.append(error[~edge].mean())
    return float(sum(across) / sum(inside))


def last_kernel_of(decoder: Any, kernel: int) -> Any:
    """A copy of a TinyDecoder whose last convolution has `kernel` x `kernel` weights, drawing the
    same pictures: the old weights at the kernel's centre, zeros around them (training then learns
    what each block takes from its neighbours)."""
    from ..core.tiny_decoder import TinyDecoder

    grown = TinyDecoder(**{**{key: value for key, value in decoder.config.items() if not key.startswith("_")},
                           "last_kernel": kernel})
    state = decoder.state_dict()
    weight = torch.zeros_like(grown.last.weight)
    old = state["last.weight"]
    centre = (kernel - old.shape[-1]) // 2
    weight[..., centre:centre + old.shape[-2], centre:centre + old.shape[-1]] = old
    grown.load_state_dict({**state, "last.weight": weight})
    return grown


def check_last_kernel(init: Path | None, last_kernel: int | None) -> None:
    """A decoder's last convolution can grow from init's (last_kernel_of), not shrink: ValueError naming both."""
    if init is None or last_kernel is None:
        return
    had = json.loads((Path(init) / "config.json").read_text(encoding="utf-8")).get("last_kernel", 1)
    if last_kernel < had:
        raise ValueError(f"last_kernel {last_kernel} (--last-kernel): the decoder in {init} has a {had} x {had} "
                         "last convolution, which can grow but not shrink")


def train(student: Any, latents: torch.Tensor, target: torch.Tensor, steps: int, batch: int = 64, lr: float = 2e-3,
          seed: int = 0, log: Any = print, weights: torch.Tensor | None = None,
          object_weight: float = 0.0, edge_weight: float = 0.0) -> list[tuple[int, float]]:
    """Adam on the L1 error; the learning rate falls on a cosine to zero. weights: how often each
    latent is drawn, relative to the others (None: all alike). object_weight: the object's pixels
    (object_mask of the teacher's picture) count 1 + object_weight times in the loss. edge_weight:
    the L1 error of the differences between neighbouring pixels (across and along, as grid_excess
    reads them) counts this many times beside it: a step between two pixels the teacher has not
    costs more than the same error spread evenly."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))
    losses, running = [], 0.0
    student.train()
    for step in range(1, steps + 1):
        pick = (torch.randint(0, len(latents), (batch,), generator=generator) if weights is None
                else torch.multinomial(weights, batch, replacement=True, generator=generator))
        made, truth = student(latents[pick]), target[pick]
        error = (made - truth).abs()
        if object_weight:
            error = error * (1 + object_weight * object_mask(truth))
        loss = error.mean()
        if edge_weight:
            loss = loss + edge_weight * sum((made.diff(dim=dim) - truth.diff(dim=dim)).abs().mean() for dim in (2, 3))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % 100 == 0 or step == steps:
            losses.append((step, running / (step % 100 or 100)))
            log(f"step {step}/{steps}: L1 {losses[-1][1] * 127.5:.2f} of 255")
            running = 0.0
    student.eval()
    return losses


def distil(pipe: Any, out: Path, *, runs: int = 96, renders: int = 2048, held_out: int = 24, steps: int = 3000,
           batch: int = 32, seed: int = 0, shape: dict | None = None, log: Any = print, lr: float = 2e-3,
           object_weight: float = 0.0, init: Path | None = None, edge_weight: float = 0.0,
           last_kernel: int | None = None) -> dict:
    """Distil a TinyDecoder from `pipe`'s VAE into the folder `out`; returns (and writes beside it, as
    distillation.json) the record: data, training, held-out mean errors of 255 against the VAE and how
    much a patch grid shows (grid_excess). init: a TinyDecoder folder to start from (its shape, not
    `shape`); steps=0 with init measures it. last_kernel: the decoder's last convolution (1 or 3; a new
    decoder's default 3); with init, 3 grows a 1 x 1 one (last_kernel_of: the same pictures to start from)."""
    from ..core.tiny_decoder import TinyDecoder

    if init is not None and shape:
        raise ValueError(f"init={str(init)!r} brings its own shape; got shape={shape} as well")
    check_last_kernel(init, last_kernel)
    started = time.perf_counter()
    latents = target = None
    if steps:  # steps=0 only measures the init decoder: no training data
        x0, xt = run_latents(pipe, runs, seed=seed + 100_000)
        clean = render_latents(pipe, renders, seed=seed + 200_000)
        generator = torch.Generator().manual_seed(seed)
        nearby = clean + 0.3 * torch.randn(clean.shape, generator=generator)
        latents = torch.cat([x0, xt, clean, nearby])
        target = teacher(pipe.vae, latents)
        log(f"{len(latents)} latents and their VAE pictures in {time.perf_counter() - started:.0f} s")
    made = time.perf_counter() - started

    torch.manual_seed(seed)
    if init is not None:
        student = TinyDecoder.from_pretrained(init)
        if last_kernel is not None and last_kernel != student.config.last_kernel:
            student = last_kernel_of(student, last_kernel)
    else:
        student = TinyDecoder(latent_channels=pipe.vae.config.latent_channels, **(shape or {}),
                              last_kernel=3 if last_kernel is None else last_kernel)
    losses = train(student, latents, target, steps, batch=batch, seed=seed, log=log, lr=lr,
                   object_weight=object_weight, edge_weight=edge_weight) if steps else []
    student.eval()
    trained = time.perf_counter() - started - made

    held_x0, held_xt = run_latents(pipe, held_out, seed=seed + 300_000)
    per_run = len(held_x0) // held_out
    held_target = teacher(pipe.vae, held_x0)
    last = slice(per_run - 1, None, per_run)  # each run's final x0
    second_half = torch.arange(len(held_x0)) % per_run >= per_run // 2
    colours = object_colour_errors(student, held_x0[second_half], held_target[second_half])
    figures = {
        "x0_mae": mean_error(student, held_x0, held_target),
        "xt_mae": mean_error(student, held_xt, teacher(pipe.vae, held_xt)),
        "final_x0_mae": mean_error(student, held_x0[last], held_target[last]),
        "grid_x0": grid_excess(student, held_x0, held_target),
        "grid_xt": grid_excess(student, held_xt, teacher(pipe.vae, held_xt)),
        "object_colour_error": float(np.mean(colours)) if colours else float("nan"),
        "object_colour_error_p90": float(np.percentile(colours, 90)) if colours else float("nan"),
    }
    log(json.dumps(figures, indent=1))
    student.save_pretrained(out)
    config = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))
    if config.pop("_name_or_path", None) is not None:  # from_pretrained's folder (--init): a path of this machine
        (Path(out) / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    record = {"latents": 0 if latents is None else len(latents), "training_runs": runs, "renders": renders,
              "held_out_runs": held_out, "steps": steps, "batch": batch, "lr": lr, "object_weight": object_weight,
              "edge_weight": edge_weight, "last_kernel": int(student.config.last_kernel),
              "init": None if init is None else Path(init).name, "data_seconds": round(made, 1),
              "train_seconds": round(trained, 1),
              "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in student.parameters()),
              "loss": [[s, round(v * 127.5, 3)] for s, v in losses],
              **{key: round(value, 4) for key, value in figures.items()}}
    before = None if init is None else Path(init) / "distillation.json"
    if before is not None and before.is_file():  # the record of the decoder this one started from
        record["init_record"] = json.loads(before.read_text(encoding="utf-8"))
    (Path(out) / "distillation.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def write_shapes_tiny(pipe: Any, folder: Path, quick: bool = False) -> dict:
    """The tiny decoder of a model nbdiffuse.shapes.train just wrote: a distillation of 3000 steps
    (a few minutes), or for a smoke run a rough one of seconds. The shipped one had 20000 steps."""
    from ..core.loading import TINY_FOLDER

    size = dict(runs=1, renders=16, held_out=1, steps=10) if quick else dict(runs=48, renders=1024, held_out=8)
    return distil(pipe, Path(folder) / TINY_FOLDER, **size, log=lambda line: None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--out", default=None, help="where to write the decoder (default: MODEL/tiny_decoder)")
    parser.add_argument("--runs", type=int, default=96, help="training runs of the model (30 steps each)")
    parser.add_argument("--renders", type=int, default=2048, help="rendered pictures")
    parser.add_argument("--held-out", type=int, default=24, help="held-out runs for the figures")
    parser.add_argument("--steps", type=int, default=3000, help="training steps")
    parser.add_argument("--batch", type=int, default=32, help="latents per training step")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam's first learning rate (a cosine takes it to 0)")
    parser.add_argument("--object-weight", type=float, default=0.0,
                        help="the object's pixels count 1 + this many times in the loss (default 0: all alike)")
    parser.add_argument("--init", default=None, help="a tiny decoder folder to start from (--steps 0: measure it)")
    parser.add_argument("--channels", type=int, nargs="+", default=None, help="TinyDecoder channels (default: its own)")
    parser.add_argument("--convs", type=int, nargs="+", default=None, help="TinyDecoder convs per level")
    parser.add_argument("--patch", type=int, default=None, help="TinyDecoder patch")
    parser.add_argument("--last-kernel", type=int, choices=(1, 3), default=None,
                        help="TinyDecoder's last convolution: 3 (a new decoder's default) lets each patch read its "
                             "neighbours (no patch grid); with --init, 3 grows the init's 1 x 1 one, keeping its "
                             "pictures to start from")
    parser.add_argument("--edge-weight", type=float, default=0.0,
                        help="the error between neighbouring pixels counts this many times beside the L1 error")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a smoke run of seconds (tests)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    shape = {key: value for key, value in (("channels", args.channels), ("convs", args.convs), ("patch", args.patch))
             if value is not None}
    for name in ("steps", "runs", "renders", "held_out", "batch", "lr", "object_weight", "edge_weight"):
        value, least = getattr(args, name), (1 if name in ("runs", "held_out", "batch") else 0)
        if not value >= least or (name == "lr" and not value > 0):
            parser.error(f"--{name.replace('_', '-')} must be {'> 0' if name == 'lr' else f'>= {least}'}; got {value}")
    if args.steps == 0 and args.init is None:
        parser.error("--steps 0 measures a decoder: it needs --init FOLDER")
    if args.init is not None and shape:
        parser.error(f"--init {args.init} brings its own shape; leave out --channels, --convs and --patch")
    if args.init is not None and not (Path(args.init) / "config.json").is_file():
        parser.error(f"--init {args.init}: no tiny decoder there (no config.json)")
    try:
        check_last_kernel(None if args.init is None else Path(args.init), args.last_kernel)
    except ValueError as exc:
        parser.error(str(exc))
    if args.tiny:
        args.runs, args.renders, args.held_out, args.steps = 1, 16, 1, min(args.steps, 10)
    torch.set_num_threads(args.threads)

    from ..core.loading import EMBEDDED_MODEL, TINY_FOLDER, load_pipeline

    folder = Path(args.model) if args.model else EMBEDDED_MODEL
    out = Path(args.out) if args.out else folder / TINY_FOLDER
    pipe = load_pipeline(None if args.model is None else str(folder), device="cpu")
    record = distil(pipe, out, runs=args.runs, renders=args.renders, held_out=args.held_out, steps=args.steps,
                    batch=args.batch, seed=args.seed, shape=shape, lr=args.lr, object_weight=args.object_weight,
                    init=None if args.init is None else Path(args.init), edge_weight=args.edge_weight,
                    last_kernel=args.last_kernel)
    from .training.report import portable_argv  # the output folder as DIR, as train.py records its command

    record = {"command": "python -m nbdiffuse.shapes.distil_tiny " + " ".join(portable_argv(argv)), **record}
    (out / "distillation.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
