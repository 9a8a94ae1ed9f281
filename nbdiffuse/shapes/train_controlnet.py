"""Train the embedded model's drawable ControlNet: `python -m nbdiffuse.shapes.train_controlnet --out DIR`.

The ControlNet reads a hand-drawn outline (white strokes on black, nbdiffuse.shapes.outline) and
steers the frozen embedded model so that the object takes the drawn shape where it was drawn. It is
a light ControlNet: the embedded UNet's encoder without its attention layers (ResNet blocks,
initialised from the UNet's own), a 3-layer conditioning encoder for the 64x64 outline (two
stride-2 convolutions to the 16x16 latent grid) and diffusers' zero convolutions, so that an
untrained ControlNet leaves the model as it was. Each training item is a rendered picture and the
outline of its object; its text mostly leaves out shape and place (the outline must carry them),
sometimes names everything, and is empty 10% of the time (classifier-free guidance). Epsilon loss
through the frozen UNet, timesteps drawn toward high noise, where composition is decided.

Runs stop cleanly with --max-minutes (a checkpoint in DIR/checkpoint and a usable ControlNet folder
in DIR) and go on from the checkpoint when started again with the same --out. --tiny is a
seconds-long run for tests. The shipped ControlNet lives in nbdiffuse/shapes/controlnet_outline.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .outline import training_pair
from .render import training_text
from .training.checkpoint import Checkpoint
from .training.progress import Deadline, say
from .training.report import portable_argv

CONDITIONING_CHANNELS = (16, 32, 64)  # two stride-2 convolutions: 64x64 outline -> 16x16 latent grid
EMPTY_TEXT = 0.1  # share of items trained with "" (the unconditional row of guidance)
FULL_TEXT = 0.2  # share whose text names everything (the outline then agrees with it)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nbdiffuse.shapes.train_controlnet",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output ControlNet folder (checkpoint in OUT/checkpoint)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long")
    parser.add_argument("--max-steps", type=int, default=3000, help="optimizer steps in all (default 3000)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--pool-size", type=int, default=8000, help="picture/outline pairs rendered for training")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run (tests): 16 pairs, 2 steps of 4")
    return parser


def build_controlnet(unet):
    """A light ControlNet for `unet`: its encoder's ResNet blocks (weights copied) without attention."""
    from diffusers import ControlNetModel

    c = unet.config
    net = ControlNetModel(
        in_channels=c.in_channels, down_block_types=("DownBlock2D",) * len(c.block_out_channels),
        mid_block_type="UNetMidBlock2D", block_out_channels=c.block_out_channels, layers_per_block=c.layers_per_block,
        cross_attention_dim=c.cross_attention_dim, attention_head_dim=c.attention_head_dim,
        norm_num_groups=c.norm_num_groups, flip_sin_to_cos=c.flip_sin_to_cos, freq_shift=c.freq_shift,
        addition_embed_type=c.addition_embed_type, addition_embed_type_num_heads=c.addition_embed_type_num_heads,
        conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
    for name in ("conv_in", "time_embedding", "add_embedding"):
        getattr(net, name).load_state_dict(getattr(unet, name).state_dict())
    net.down_blocks.load_state_dict(unet.down_blocks.state_dict(), strict=False)  # the attention layers stay out
    net.mid_block.load_state_dict(unet.mid_block.state_dict(), strict=False)
    return net


def _text(caption, rng: np.random.Generator) -> str:
    draw = rng.random()
    if draw < EMPTY_TEXT:
        return ""
    if draw < EMPTY_TEXT + FULL_TEXT:
        return training_text(caption, rng, omit=0.0)
    return training_text(caption.without("shape", "position", "size"), rng, omit=0.0)


def _pool(count: int, seed: int) -> tuple[list, np.ndarray, np.ndarray]:
    captions, pictures, outlines = [], [], []
    for i in range(count):
        caption, picture, drawn = training_pair(seed=np.random.default_rng([seed, 7, i]))
        captions.append(caption)
        pictures.append(np.asarray(picture))
        outlines.append(np.asarray(drawn))
    return captions, np.stack(pictures), np.stack(outlines)


class Texts:
    """Each text's encoder states, computed once (the text encoder is frozen)."""

    def __init__(self, pipe):
        self.pipe, self.cache = pipe, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        for text in set(texts) - set(self.cache):
            self.cache[text] = self.pipe.encode_prompt(text, torch.device("cpu"), 1, False)[0][0]
        return torch.stack([self.cache[text] for text in texts])


@torch.no_grad()
def _encode(vae, pictures: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for start in range(0, len(pictures), 256):
        pixels = torch.from_numpy(pictures[start:start + 256]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        posterior = vae.encode(pixels).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def _batch(ctx: dict, step: int):
    rng = np.random.default_rng([ctx["seed"], 11, step])
    index = rng.integers(len(ctx["captions"]), size=ctx["batch"])
    hidden = ctx["texts"]([_text(ctx["captions"][i], rng) for i in index])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    idx = torch.from_numpy(index)
    latents = (ctx["mean"][idx] + ctx["std"][idx] * torch.randn(ctx["mean"][idx].shape, generator=generator)) \
        * ctx["scaling"]
    noise = torch.randn(latents.shape, generator=generator)
    u = torch.rand(len(index), generator=generator)
    timesteps = (999 - (u * u * 1000).long()).clamp(0, 999)  # toward high noise
    a = ctx["alphas"][timesteps].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    outline = torch.from_numpy(ctx["outlines"][index]).permute(0, 3, 1, 2).float().div(255.0)
    return noisy, timesteps, hidden, outline, noise


def _step(ctx: dict, step: int) -> float:
    net, unet, optimizer = ctx["controlnet"], ctx["unet"], ctx["optimizer"]
    noisy, timesteps, hidden, outline, noise = _batch(ctx, step)
    down, mid = net(noisy, timesteps, hidden, controlnet_cond=outline, return_dict=False)
    prediction = unet(noisy, timesteps, hidden, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid).sample
    loss = F.mse_loss(prediction, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def _export(ctx: dict, out: Path, state: dict) -> None:
    ctx["controlnet"].save_pretrained(out, safe_serialization=True)
    (out / "training.json").write_text(json.dumps(state, indent=1))
    (out / "TRAINING.md").write_text(report(state))


def report(state: dict) -> str:
    """TRAINING.md of a ControlNet run: its steps, each start's command and threads, the loss."""
    losses = " ".join(f"{s}:{v:.4f}" for s, v in state["losses"])
    runs = "".join(f"- steps {run['from']}-{run['to']}: `python -m nbdiffuse.shapes.train_controlnet "
                   f"{' '.join(run['argv'])}`, {run['seconds'] / 60:.1f} min on {run['threads']} CPU thread(s)\n"
                   for run in state.get("runs", []))
    return ("# Training of the embedded model's outline ControlNet\n\n"
            f"- steps: {state['step']} of batch {state['batch']}, {state['seconds'] / 60:.1f} min in all\n"
            f"- pool: {state['pool_size']} picture/outline pairs\n{runs}\n"
            f"## Loss\n\n{losses}\n")


def main(argv: list[str] | None = None) -> Path:
    args = _parser().parse_args(argv)
    if args.tiny:
        args.pool_size, args.max_steps, args.batch = 16, 2, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    from ..core.loading import load_pipeline  # shapes -> core inside the function (ARCHITECTURE.md)

    pipe = load_pipeline(device="cpu", dtype="float32")
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    net = build_controlnet(pipe.unet).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    checkpoint = Checkpoint(args.out / "checkpoint")
    state = {"step": 0, "seconds": 0.0, "losses": [], "batch": args.batch, "pool_size": args.pool_size,
             "argv": portable_argv(list(argv if argv is not None else sys.argv[1:]))}
    if checkpoint.exists():
        state = dict(checkpoint.read_state(), argv=state["argv"])
        checkpoint.restore(state, {"controlnet": net}, {"controlnet": optimizer}, {}, torch.device("cpu"))
        say(f"resuming at step {state['step']}")
    run = {"from": state["step"], "to": state["step"], "seconds": 0.0, "threads": torch.get_num_threads(),
           "argv": state["argv"]}
    state["runs"] = [*state.get("runs", []), run]  # each start (a resume is a run of its own)
    say(f"rendering {args.pool_size} picture/outline pairs")
    captions, pictures, outlines = _pool(args.pool_size, args.seed)
    mean, std = _encode(pipe.vae, pictures)
    ctx = {"seed": args.seed, "batch": args.batch, "captions": captions, "outlines": outlines, "mean": mean, "std": std,
           "scaling": pipe.vae.config.scaling_factor, "alphas": pipe.scheduler.alphas_cumprod.float(),
           "texts": Texts(pipe), "controlnet": net, "unet": pipe.unet, "optimizer": optimizer}
    deadline, began, losses = Deadline(args.max_minutes), time.time() - state["seconds"], []
    run_began = time.time()
    while state["step"] < args.max_steps and not deadline.passed():
        losses.append(_step(ctx, state["step"]))
        state["step"] += 1
        if state["step"] % 25 == 0 or state["step"] == args.max_steps:
            state["seconds"] = time.time() - began
            state["losses"].append([state["step"], round(float(np.mean(losses)), 6)])
            run.update(to=state["step"], seconds=time.time() - run_began)
            say(f"step {state['step']}/{args.max_steps} loss {np.mean(losses):.4f} "
                f"{state['seconds'] / state['step']:.2f} s/step")
            losses = []
            checkpoint.save(state, {"controlnet": net}, {"controlnet": optimizer}, {})
    state["seconds"] = time.time() - began
    run.update(to=state["step"], seconds=time.time() - run_began)
    checkpoint.save(state, {"controlnet": net}, {"controlnet": optimizer}, {})
    _export(ctx, args.out, state)
    say(f"saved the ControlNet in {args.out} after {state['step']} steps")
    return args.out


if __name__ == "__main__":
    main()
