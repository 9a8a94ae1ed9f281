import json

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.shapes import model, train
from nbdiffuse.shapes.training import export, models

ARGS = ["--preset", "cpu", "--max-steps", "2", "--eval-samples", "0", "--threads", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("smoke") / "model"
    state = train.main(["--out", str(out), *ARGS])
    return out, state


def test_smoke_run_writes_a_complete_small_pipeline_folder(trained):
    out, state = trained
    assert state["complete"] and state["vae_step"] == 2 and state["unet_step"] == 2
    assert 0.1 < state["scaling_factor"] < 10
    for name in ("model_index.json", "TRAINING.md", "training.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                 "tiny_decoder/config.json", "tiny_decoder/distillation.json"):
        assert (out / name).exists(), name
    assert not (out / "checkpoint").exists()  # not part of what ships
    assert not list(out.rglob("*.bin"))  # safetensors only
    assert train.size_of(out) <= 25e6
    report = json.loads((out / "training.json").read_text())
    assert report["runs"][0]["hardware"]["torch_threads"] == 1 and report["seconds"]["unet"] > 0


def test_output_loads_offline_and_generates_64x64(trained):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    out, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, use_safetensors=True)
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "big red circle on the left, white background",
        num_inference_steps=2,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (64, 64)
    # nbdiffuse loads the folder with the tiny decoder distilled from its own VAE
    from nbdiffuse.core.pipe_attrs import tiny_decoder

    loaded = nbd.load_pipeline(str(out))
    assert tiny_decoder(loaded) is not None
    assert nbd.trace(loaded, "red circle", steps=2).image(-1, decoder="tiny").size == (64, 64)


def test_resume_after_a_stop_gives_the_same_weights(trained, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    out, _ = trained
    # Stop right after the first UNet step, as --max-minutes would, then go on with --resume.
    updates = [0]
    real_update = models.EMA.update

    def counting_update(self, step):
        real_update(self, step)
        updates[0] += 1

    monkeypatch.setattr(models.EMA, "update", counting_update)
    monkeypatch.setattr(train.Deadline, "passed", lambda self: updates[0] >= 1)
    resumed = tmp_path / "resumed"
    state = train.main(["--out", str(resumed), *ARGS])
    assert not state["complete"] and state["unet_step"] == 1
    assert (resumed / "checkpoint" / "state.json").exists()
    with pytest.raises(SystemExit, match="--resume"):
        train.main(["--out", str(resumed), *ARGS])

    monkeypatch.setattr(train.Deadline, "passed", lambda self: False)
    state = train.main(["--out", str(resumed), "--resume", *ARGS])
    assert state["complete"] and state["unet_step"] == 2 and len(state["runs"]) == 2
    for part in ("unet/diffusion_pytorch_model", "text_encoder/model", "vae/diffusion_pytorch_model"):
        expected = load_file(out / f"{part}.safetensors")
        got = load_file(resumed / f"{part}.safetensors")
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), part


def test_init_goes_on_from_a_trained_folder_with_its_vae_kept(trained, tmp_path):
    from safetensors.torch import load_file

    out, _ = trained
    again = tmp_path / "again"
    state = train.main(["--out", str(again), "--init", str(out), "--lr", "3e-4", *ARGS])
    assert state["complete"] and state["vae_steps"] == 0 and state["unet_step"] == 2
    assert state["init"]["folder"] == out.name and state["init"]["unet_steps"] == 2 and state["lr"] == 3e-4
    vae = "vae/diffusion_pytorch_model.safetensors"
    before, after = load_file(out / vae), load_file(again / vae)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the VAE is kept as it was
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert any(not torch.equal(a, b) for a, b in zip(load_file(out / unet).values(), load_file(again / unet).values()))
    assert "started from (--init)" in (again / "TRAINING.md").read_text()
    assert "## The model this run started from (--init)" in (again / "TRAINING.md").read_text()
    tiny = "tiny_decoder/diffusion_pytorch_model.safetensors"  # distilled from that same VAE: kept with it
    assert (out / tiny).read_bytes() == (again / tiny).read_bytes()
    with pytest.raises(SystemExit, match="pass the --preset it was trained with"):
        train.main(["--out", str(tmp_path / "other"), "--init", str(out), "--preset", "gpu", "--max-steps", "1"])


def test_a_resumed_init_run_keeps_the_init_models_tiny_decoder(trained, tmp_path, monkeypatch):
    out, _ = trained
    again = tmp_path / "again"
    monkeypatch.setattr(train.Deadline, "passed", lambda self: True)  # stops at once, as --max-minutes would
    assert not train.main(["--out", str(again), "--init", str(out), *ARGS])["complete"]
    monkeypatch.setattr(train.Deadline, "passed", lambda self: False)
    distilled = []
    monkeypatch.setattr(export, "write_shapes_tiny", lambda *args, **kwargs: distilled.append(args))
    assert train.main(["--out", str(again), "--resume", *ARGS])["complete"]
    tiny = "tiny_decoder/diffusion_pytorch_model.safetensors"  # the --init folder is not named again: still kept
    assert not distilled and (out / tiny).read_bytes() == (again / tiny).read_bytes()


def test_offset_noise_fine_tune_of_the_noisiest_steps(trained, tmp_path, monkeypatch):
    """--offset-noise and --t-min (the fine-tune that taught the shipped model to draw the background
    it is asked for): the UNet sees only timesteps t_min..999; both are recorded."""
    out, _ = trained
    seen = []
    build = model.build_unet

    def watched(preset):
        unet = build(preset)
        unet.register_forward_pre_hook(lambda module, args: seen.extend(args[1].tolist()) if module.training else None)
        return unet

    monkeypatch.setattr(model, "build_unet", watched)
    again = tmp_path / "tuned"
    state = train.main(["--out", str(again), "--init", str(out), "--offset-noise", "0.1", "--t-min", "600",
                        "--batch", "4", "--pool-size", "300", *ARGS])
    assert state["complete"] and state["offset_noise"] == 0.1 and state["t_min"] == 600 and state["batch"] == 4
    assert len(seen) == 2 * 4 and min(seen) >= 600  # 2 steps of batch 4
    report = (again / "TRAINING.md").read_text()
    assert "offset noise: 0.1" in report and "UNet timesteps: 600..999" in report and "UNet batch: 4" in report


def test_caption_noise_fine_tune_records_its_recipe(trained, tmp_path):
    """--caption-noise (captions named wrong, as web captions are: the guidance lesson) and
    --ema-decay are recorded, and TRAINING.md says why the captions were noisy."""
    out, _ = trained
    again = tmp_path / "noisy"
    state = train.main(["--out", str(again), "--init", str(out), "--caption-noise", "0.1", "--ema-decay", "0.99",
                        "--batch", "4", "--pool-size", "300", *ARGS])
    assert state["complete"] and state["caption_noise"] == 0.1 and state["ema_decay"] == 0.99
    report = (again / "TRAINING.md").read_text()
    assert "caption noise: each attribute named wrong in 10% of captions" in report and "EMA decay: 0.99" in report
    assert "## Why the captions are noisy (--caption-noise)" in report


def test_per_attribute_caption_noise_and_pair_share_are_recorded(trained, tmp_path):
    out, _ = trained
    again = tmp_path / "per-attribute"
    state = train.main(["--out", str(again), "--init", str(out), "--caption-noise", "shape=0.05,size=0.1",
                        "--pair-share", "0.25", "--batch", "4", "--pool-size", "300", *ARGS])
    assert state["complete"] and state["caption_noise"] == {"shape": 0.05, "size": 0.1} and state["pair_share"] == 0.25
    report = (again / "TRAINING.md").read_text()
    assert "caption noise: shape named wrong in 5% of captions, size in 10% (--caption-noise)" in report
    assert "black/white pairs: 25% of each UNet batch (--pair-share)" in report
    assert "## Why the captions are noisy (--caption-noise)" in report


def test_a_conditioning_fine_tune_keeps_the_rest_of_the_unet_bit_for_bit(trained, tmp_path):
    """--train conditioning: only the text encoder and the cross-attention keys and values learn."""
    from safetensors.torch import load_file

    out, _ = trained
    again = tmp_path / "conditioning"
    state = train.main(["--out", str(again), "--init", str(out), "--train", "conditioning", "--lr", "1e-2",
                        "--batch", "4", "--pool-size", "300", *ARGS])
    assert state["complete"] and state["train"] == "conditioning"
    before, after = (load_file(str(folder / "unet/diffusion_pytorch_model.safetensors")) for folder in (out, again))
    reads_caption = [name for name in before if ".attn2.to_k." in name or ".attn2.to_v." in name]
    assert reads_caption and all(not torch.equal(before[name], after[name]) for name in reads_caption)
    assert all(torch.equal(before[name], after[name]) for name in before if name not in reads_caption)
    text_before, text_after = (load_file(str(folder / "text_encoder/model.safetensors")) for folder in (out, again))
    assert any(not torch.equal(text_before[name], text_after[name]) for name in text_before)
    assert "- trained: the text encoder and the UNet's cross-attention keys and values (--train conditioning)" \
        in (again / "TRAINING.md").read_text()


def test_caption_noise_of_zero_everywhere_is_no_noise():
    assert train.parse_args(["--out", "x", "--caption-noise", "shape=0,size=0"]).caption_noise == 0.0
    assert train.parse_args(["--out", "x", "--caption-noise", "shape=0.05"]).caption_noise == {"shape": 0.05}


def test_a_partial_fine_tune_needs_a_model_to_start_from(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--out", "x", "--train", "text"])
    assert "--train=text" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--t-min", "1000"], ["--offset-noise", "-0.1"], ["--batch", "0"], ["--pool-size", "0"],
                                 ["--caption-noise", "1"], ["--caption-noise", "-0.1"], ["--ema-decay", "1"],
                                 ["--ema-decay", "0"], ["--caption-noise", "colour=0.1"],
                                 ["--caption-noise", "shape=1.5"], ["--caption-noise", "shape=x"],
                                 ["--pair-share", "1.5"], ["--pair-share", "-0.1"]])
def test_bad_fine_tune_options_are_refused_by_name(bad, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--out", "x", *bad])
    error = capsys.readouterr().err
    assert bad[0] in error and bad[1] in error
