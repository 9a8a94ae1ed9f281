"""What watching costs on a GPU: the Explorer's live run against a bare diffusers call.

Builds Stable Diffusion 1.5 and SDXL pipelines from their real configurations with random
weights (the same compute as the released models; nothing is downloaded), in fp16, and times,
interleaved, with the median of --pairs rounds:

- bare:     pipe(prompt, 30 steps, guidance 7.5) -> PIL image (diffusers alone);
- trace:    nbd.trace (every step recorded: x_t, x0, both model outputs) and the final frame
            decoded by the full VAE, no widget;
- explorer: the same run through nbd.Explorer: every step recorded (x_t, x0, both model
            outputs), approx previews of both views JPEG-encoded and paced to a headless
            browser, the final frame encoded lossless too (WebP; goal <= 1.03);
- sync:     the same with recording copies made synchronously (`.cpu()` per tensor), to show
            what the non-blocking copies save;
- tiny-AE:  the Explorer with preview="tiny": each frame it sends is decoded by a tiny
            autoencoder (diffusers AutoencoderTiny, TAESD's architecture) at the output size on the
            decoders' side stream and JPEG-encoded; only the frames sent are decoded (goal <= 1.10).

Then: the full-VAE decode of a scrubbed frame (goal <= 30 ms), the same decode while another run
denoises, on the default stream and on the decoders' side stream (its latency, and what it costs
the run), the host memory of a 50-step
SDXL trajectory (goal <= 60 MB), and an out-of-memory check (a 4096x4096 run on a card capped
to a 10 GB share reports "Out of memory" in the widget; the next 512x512 run works).

    python benchmarks/gpu_overhead.py [--pairs 7] [--steps 30] [--families sd15,sdxl]
    python benchmarks/gpu_overhead.py --tiny    # CPU smoke run with toy sizes (no figures)

Ratios, not timed assertions: nothing here fails on a slow machine.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbdiffuse as nbd  # noqa: E402
from nbdiffuse.core import recording  # noqa: E402
from nbdiffuse.widgets.frames import full_frames  # noqa: E402
from nbdiffuse.testing import tiny_tokenizer  # noqa: E402
from nbdiffuse.widgets.headless import HeadlessFrontend  # noqa: E402

PROMPT = "a watercolor painting of a lighthouse on a cliff at dawn"


def _clip(tokenizer, hidden, layers, heads, projection=None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                            projection_dim=projection or hidden, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(tiny: bool, sdxl: bool):
    from diffusers import AutoencoderKL

    channels = (16, 32) if tiny else (128, 256, 512, 512)
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * len(channels),
                         up_block_types=("UpDecoderBlock2D",) * len(channels), block_out_channels=channels,
                         layers_per_block=1 if tiny else 2, latent_channels=4, norm_num_groups=8 if tiny else 32,
                         sample_size=1024 if sdxl else 512, scaling_factor=0.13025 if sdxl else 0.18215,
                         force_upcast=sdxl).eval()


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  timestep_spacing="leading", steps_offset=1)


def build_sd15(tiny: bool):
    """StableDiffusionPipeline with SD 1.5's configuration (UNet 860M, CLIP ViT-L text encoder)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer()
    width = 32 if tiny else 768
    unet = UNet2DConditionModel(
        sample_size=8 if tiny else 64, in_channels=4, out_channels=4, layers_per_block=1 if tiny else 2,
        block_out_channels=(32, 64) if tiny else (320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D") if tiny else
        ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D") if tiny else
        ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=width, attention_head_dim=8, norm_num_groups=16 if tiny else 32).eval()
    text = _clip(tokenizer, width, 2 if tiny else 12, 2 if tiny else 12)
    return StableDiffusionPipeline(vae=_vae(tiny, False), text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def build_sdxl(tiny: bool):
    """StableDiffusionXLPipeline with SDXL base's configuration (UNet 2.6B, CLIP-L + OpenCLIP-bigG)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer()
    one, two = (32, 32) if tiny else (768, 1280)
    unet = UNet2DConditionModel(
        sample_size=8 if tiny else 128, in_channels=4, out_channels=4, layers_per_block=1 if tiny else 2,
        block_out_channels=(32, 64) if tiny else (320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D") if tiny else
        ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D") if tiny else
        ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1) if tiny else (1, 2, 10),
        attention_head_dim=(2, 4) if tiny else (5, 10, 20), use_linear_projection=True,
        cross_attention_dim=one + two, addition_embed_type="text_time", addition_time_embed_dim=8 if tiny else 256,
        projection_class_embeddings_input_dim=(8 if tiny else 256) * 6 + two,
        norm_num_groups=16 if tiny else 32).eval()
    return StableDiffusionXLPipeline(
        vae=_vae(tiny, True), text_encoder=_clip(tokenizer, one, 2 if tiny else 12, 2 if tiny else 12),
        text_encoder_2=_clip(tokenizer, two, 2 if tiny else 32, 2 if tiny else 20, projection=two),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=_scheduler())


def build_tiny_ae(tiny: bool):
    from diffusers import AutoencoderTiny

    channels = (8, 8, 8, 8) if tiny else (64, 64, 64, 64)
    return AutoencoderTiny(encoder_block_out_channels=channels, decoder_block_out_channels=channels).eval()


def build(family: str, tiny: bool, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    with torch.device(device):  # random weights made on the device: seconds, not a minute on the CPU
        pipe = build_sd15(tiny) if family == "sd15" else build_sdxl(tiny)
        pipe = pipe.to(device, dtype)
        nbd.set_tiny_decoder(pipe, build_tiny_ae(tiny).to(device, dtype))
    pipe.scheduler = _scheduler()  # made outside the device context: diffusers keeps its tables on the CPU
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Timer:
    def __init__(self, device: str):
        self.device = device

    def __call__(self, work) -> float:
        sync(self.device)
        began = time.perf_counter()
        work()
        sync(self.device)
        return time.perf_counter() - began


def measure_family(family: str, args, device: str, dtype: torch.dtype, rows: list) -> None:
    size = args.size or (64 if args.tiny else 512 if family == "sd15" else 1024)
    steps = args.steps
    pipe = build(family, args.tiny, device, dtype)
    ex = nbd.Explorer(pipe)
    frontend = HeadlessFrontend(ex, ack_delay=0.005)
    timer = Timer(device)
    kw = dict(height=size, width=size)

    def bare(seed):
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(seed),
             **kw).images[0]

    def explorer(seed, asynchronous=True, preview="approx"):
        recording.ASYNC_CUDA = asynchronous
        ex.preview = preview
        try:
            ex.generate(prompt=PROMPT, steps=steps, guidance=7.5, seed=seed, **kw)
            ex.wait()
            if ex.status != "done":
                raise RuntimeError(f"Explorer run ended {ex.status}: {ex.error}")
        finally:
            recording.ASYNC_CUDA = True

    def traced(seed):
        nbd.trace(pipe, PROMPT, steps=steps, guidance=7.5, seed=seed, **kw).image(-1, "x0", decoder="full")

    variants = {"trace": traced, "explorer": explorer, "sync": lambda s: explorer(s, False),
                "tiny-AE": lambda s: explorer(s, preview="tiny")}
    # Warm-up: kernels chosen, the approx decoder fitted, first-call allocations made.
    for work in (bare, *variants.values()):
        work(0)
    times: dict[str, list] = {name: [] for name in ("bare", *variants)}
    ratios: dict[str, list] = {name: [] for name in variants}
    for i in range(args.pairs):
        names = ["bare", *variants]
        names = names[i % len(names):] + names[:i % len(names)]  # rotate the order each round
        this = {name: timer(lambda: (bare if name == "bare" else variants[name])(i + 1)) for name in names}
        for name, seconds in this.items():
            times[name].append(seconds)
        for name in variants:
            ratios[name].append(this[name] / this["bare"])

    traj = ex.trajectory
    scrub = []
    for k in range(max(1, len(traj) - 8), len(traj) - 1):  # frames not decoded yet: a scrub's real cost
        scrub.append(timer(lambda: full_frames(traj, k, ("x0",))))
    decode_only = [timer(lambda: traj.image(k, "xt", decoder="full")) for k in range(min(5, len(traj) - 1))]
    during = scrub_during_run(pipe, traj, steps, kw, timer) if family == "sd15" else {}
    label = f"{family} {size}x{size} {str(dtype).replace('torch.', '')}"
    rows.append((label, "bare pipe(...)", f"{statistics.median(times['bare']) * 1000:.0f} ms", ""))
    goals = {"trace": "", "explorer": "<= 1.03", "sync": "(before)", "tiny-AE": "<= 1.10"}
    for name in variants:
        r = ratios[name]
        rows.append((label, f"{name} / bare", f"{statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})",
                     goals[name]))
    if device == "cuda" and family == "sd15":
        rows.append((label, "host waits for the GPU in steps 2-10", sync_report(pipe), "none"))
    rows.append((label, "scrubbed frame: full VAE + lossless WebP", f"{statistics.median(scrub) * 1000:.1f} ms", "<= 30 ms"))
    rows.append((label, "  of which the VAE decode", f"{statistics.median(decode_only) * 1000:.1f} ms", ""))
    for side, (latency, slowdown) in during.items():
        rows.append((label, f"scrub decode during a run, {side}", f"{latency * 1000:.1f} ms; run x{slowdown:.3f}",
                     "side stream: no wait"))
    sent = frontend.totals()
    rows.append((label, "messages sent (all runs)", f"{sent['messages']} ({sent['bytes'] / 1e6:.1f} MB)", ""))

    if family == "sdxl":
        gc.collect()
        long_steps = 50
        traj = nbd.trace(pipe, PROMPT, steps=long_steps, guidance=7.5, seed=1, **kw)
        tensor_bytes = sum(t.nbytes for s in traj for t in (s.latents, s.pred_x0, s.eps_cond, s.eps_uncond)
                           if t is not None) + traj.initial_latents.nbytes
        rows.append((label, f"host memory of a {long_steps}-step trajectory", f"{tensor_bytes / 1e6:.1f} MB", "<= 60 MB"))
    if family == "sd15" and device == "cuda" and not args.tiny:
        rows.append((label, "out of memory (4096x4096 on a 10 GB share)", oom_check(ex, pipe), "plain message, next run works"))
    ex.close()
    frontend.close()
    ex = pipe = None  # let the model go before the next family loads
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def scrub_during_run(pipe, traj, steps: int, kw: dict, timer) -> dict:
    """A full-VAE decode of a scrubbed frame while another run denoises, on the default stream and
    on the decoders' side stream (core/decode.py): the decode's median latency, and the run's time
    with those decodes over its time alone."""
    import threading

    from nbdiffuse.core import decode

    def run(seed):
        nbd.trace(pipe, PROMPT, steps=steps, guidance=7.5, seed=seed, **kw)

    alone = timer(lambda: run(7))
    found = {}
    for side in (False, True):
        decode.SIDE_STREAM = side
        latencies = []
        worker = threading.Thread(target=run, args=(7,))
        began = time.perf_counter()
        worker.start()
        try:
            while worker.is_alive():
                k = len(latencies) % max(1, len(traj) - 1)
                asked = time.perf_counter()  # no device-wide sync here: that would wait for the run too
                decode.full_decode(pipe.vae, traj.latents_for(k, "xt"))  # back on the host: its stream is done
                latencies.append(time.perf_counter() - asked)
                time.sleep(0.05)  # a person scrubbing: a few frames a second
            worker.join()
        finally:
            decode.SIDE_STREAM = True
        found["side stream" if side else "default stream"] = (statistics.median(latencies),
                                                               (time.perf_counter() - began) / alone)
    return found


def sync_report(pipe, steps: int = 10) -> str:
    """Where a trace makes the host wait for the GPU (torch's sync debug mode), after the first step."""
    import collections
    import warnings

    seen: collections.Counter = collections.Counter()

    def on_step(traj, step):
        if step.index == 0:
            torch.cuda.set_sync_debug_mode("warn")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            nbd.trace(pipe, PROMPT, steps=steps, guidance=7.5, on_step=on_step, height=512, width=512)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            seen[f"{Path(w.filename).name}:{w.lineno}"] += 1
    return ", ".join(f"{where} x{n}" for where, n in seen.most_common()) or "none"


def oom_check(ex, pipe) -> str:
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, 10e9 / total))
    try:
        ex.generate(prompt=PROMPT, steps=2, height=4096, width=4096)
        ex.wait()
        failed = ex.status == "error" and ex.error.startswith("Out of memory")
        message = ex.error.split(" (")[0]
        ex.generate(prompt=PROMPT, steps=5, height=512, width=512)
        ex.wait()
        return f"{'reported' if failed else 'NOT reported'}: '{message}'; next 512x512 run: {ex.status}"
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="interleaved rounds (median of these)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--size", type=int, default=None, help="image side (default: 512 for SD 1.5, 1024 for SDXL)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU: checks the script, not the GPU")
    parser.add_argument("--syncs-only", action="store_true", help="only list where a traced SD 1.5 run waits for the GPU")
    args = parser.parse_args()
    if args.syncs_only:
        pipe = build("sd15", False, "cuda", torch.float16)
        nbd.trace(pipe, PROMPT, steps=2)
        print("host waits for the GPU in steps 2-10:", sync_report(pipe))
        return
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.float16
    if device == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: this benchmark measures GPU overhead (--tiny checks the script on a CPU)")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows: list = []
    for family in args.families.split(","):
        measure_family(family.strip(), args, device, dtype, rows)
    where = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (toy sizes)"
    print(f"\n{datetime.date.today()} on {where}; torch {torch.__version__}; {args.steps} steps, "
          f"Euler, guidance 7.5, median of {args.pairs} interleaved rounds")
    width = max(len(r[1]) for r in rows)
    for label, what, value, goal in rows:
        print(f"{label:22s} {what:{width}s}  {value:34s} {goal}")


if __name__ == "__main__":
    main()
