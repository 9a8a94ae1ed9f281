"""LoRA through nbd.load_pipeline(..., lora=..., lora_scale=...): a tiny LoRA built here, offline, with peft."""
import os
import re
import threading

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core import encode_cache
from nbdiffuse.core.sources import LoraUnavailable
from nbdiffuse.core.locks import pipe_lock
from nbdiffuse.testing import save_tiny_lora, tiny_sd_pipeline

pytest.importorskip("peft")

PROMPT = "red circle"


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    return save_tiny_lora(tmp_path_factory.mktemp("lora") / "unet-lora")


@pytest.fixture(scope="module")
def te_lora_folder(tmp_path_factory):
    return save_tiny_lora(tmp_path_factory.mktemp("lora") / "te-lora", text_encoder=True, seed=1)


@pytest.fixture(scope="module")
def base():
    """The base model's run (tiny_sd_pipeline() is seeded: every call builds the same weights)."""
    return nbd.trace(tiny_sd_pipeline(), PROMPT, steps=3, seed=1).final_latents


def run(pipe):
    return nbd.trace(pipe, PROMPT, steps=3, seed=1)


def test_lora_changes_results_and_its_scale_changes_between_runs(lora_folder, base):
    pipe = tiny_sd_pipeline()
    assert nbd.load_pipeline(pipe, lora=lora_folder) is pipe
    full = run(pipe)
    assert not torch.allclose(full.final_latents, base, atol=1e-3), "the LoRA must change the result"
    assert full.params["lora"] == {"source": str(lora_folder), "file": "pytorch_lora_weights.safetensors",
                                   "scale": 1.0, "components": ["unet"]}
    nbd.set_lora_scale(pipe, 0.0)
    off = run(pipe)
    assert torch.equal(off.final_latents, base), "scale 0 is the base model, bit for bit"
    assert off.params["lora"]["scale"] == 0.0 and full.params["lora"]["scale"] == 1.0  # each run keeps its own
    nbd.set_lora_scale(pipe, 0.5)
    half = run(pipe).final_latents
    assert not torch.equal(half, base) and not torch.equal(half, full.final_latents)
    nbd.set_lora_scale(pipe, 1)
    assert torch.equal(run(pipe).final_latents, full.final_latents), "back to 1.0: the same run again"
    # a second load replaces the adapter (no stacking); lora_scale on a pipeline object with a LoRA sets the scale
    nbd.load_pipeline(pipe, lora=lora_folder / "pytorch_lora_weights.safetensors", lora_scale=2.0)
    assert pipe.get_list_adapters() == {"unet": ["nbd"]}
    twice = run(pipe)
    nbd.load_pipeline(pipe, lora_scale=0.0)
    assert torch.equal(run(pipe).final_latents, base) and twice.params["lora"]["scale"] == 2.0
    # a branch records the LoRA it continued with
    nbd.set_lora_scale(pipe, 1.0)
    child = nbd.branch(pipe, twice, at=0)
    assert child.params["lora"]["scale"] == 1.0 and twice.params["lora"]["scale"] == 2.0


def test_lora_from_a_folder_model_is_recorded_and_saved(sd_pipe, lora_folder, tmp_path, base):
    model = tmp_path / "tiny-sd"
    sd_pipe.save_pretrained(model, safe_serialization=True)
    pipe = nbd.load_pipeline(model, device="cpu", lora=lora_folder, lora_scale=0.0)
    traj = run(pipe)
    assert torch.equal(traj.final_latents, base)
    traj.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert loaded.params["lora"] == {"source": str(lora_folder), "file": "pytorch_lora_weights.safetensors",
                                     "scale": 0.0, "components": ["unet"]}
    assert run(sd_pipe).params["lora"] is None  # a model without a LoRA says so


def test_text_encoder_lora_turns_the_prompt_cache_off_and_scales_too(te_lora_folder, lora_folder, base):
    pipe = tiny_sd_pipeline()
    encode_cache.clear(pipe)
    run(pipe)
    assert encode_cache.cached_count(pipe) == 1
    nbd.load_pipeline(pipe, lora=te_lora_folder)
    assert pipe._nbd_lora["components"] == ["text_encoder", "unet"]
    assert encode_cache.cached_count(pipe) == 1  # dropped when next seen, below
    full = run(pipe)
    assert encode_cache.cached_count(pipe) == 0, "a PEFT adapter in the text encoder: nothing cached"
    assert full.params["lora"]["components"] == ["text_encoder", "unet"]
    # Only the text encoder's LoRA on: a scale change must reach the prompt encoding (no stale cache).
    pipe.unet.set_adapters(["nbd"], weights=[0.0])
    prompt_only = run(pipe).final_latents
    assert not torch.equal(prompt_only, base)
    nbd.set_lora_scale(pipe, 0.0)
    assert torch.equal(run(pipe).final_latents, base), "scale 0 (text encoder and UNet): the base model"
    nbd.set_lora_scale(pipe, 1.0)
    assert torch.equal(run(pipe).final_latents, full.final_latents)
    # replaced by a UNet-only LoRA: the text encoder is plain again and caching comes back
    nbd.load_pipeline(pipe, lora=lora_folder)
    assert pipe.get_list_adapters() == {"unet": ["nbd"]}
    run(pipe)
    assert encode_cache.cached_count(pipe) == 1


def test_lora_loaded_with_diffusers_directly_is_recorded_by_name(lora_folder):
    pipe = tiny_sd_pipeline()
    pipe.load_lora_weights(str(lora_folder), adapter_name="mine")
    lora = run(pipe).params["lora"]
    assert lora == {"source": None, "file": None, "scale": None, "components": ["unet"], "adapters": ["mine"]}


def test_lora_hub_id_resolves_from_the_local_cache_offline(lora_folder, tmp_path, monkeypatch, base):
    repo = tmp_path / "hub" / "models--nbd-test--tiny-lora"
    (repo / "snapshots").mkdir(parents=True)
    os.symlink(lora_folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    pipe = nbd.load_pipeline(tiny_sd_pipeline(), lora="nbd-test/tiny-lora", lora_scale=0.0)
    traj = run(pipe)
    assert traj.params["lora"]["source"] == "nbd-test/tiny-lora" and torch.equal(traj.final_latents, base)
    with pytest.raises(nbd.PipelineLoadError, match=r"could not load lora='nobody-here/no-lora'.*offline"):
        nbd.load_pipeline(pipe, lora="nobody-here/no-lora")


def _several(tmp, folder):
    (tmp / "a.safetensors").write_bytes((folder / "pytorch_lora_weights.safetensors").read_bytes())
    (tmp / "b.safetensors").write_bytes((folder / "pytorch_lora_weights.safetensors").read_bytes())
    return tmp


@pytest.mark.parametrize("make, match", [
    (lambda tmp, f: tmp / "missing", "does not exist"),
    (lambda tmp, f: "loras/missing.safetensors", "does not exist"),
    (lambda tmp, f: "not a hub id!", "does not exist"),
    (lambda tmp, f: (tmp / "lora.bin").write_bytes(b"x") and tmp / "lora.bin", "not a .safetensors file"),
    (lambda tmp, f: (tmp / "w.bin").write_bytes(b"x") and tmp, r"no \.safetensors LoRA weights \(only pickled w\.bin"),
    (lambda tmp, f: tmp, "no .safetensors LoRA weights"),
    (_several, "several .safetensors files"),
    (lambda tmp, f: (tmp / "bad.safetensors").write_bytes(b"not safetensors") and tmp / "bad.safetensors",
     "does not load into this StableDiffusionPipeline"),
])
def test_bad_lora_paths_are_refused_and_the_pipeline_stays_plain(tmp_path, lora_folder, make, match):
    pipe = tiny_sd_pipeline()
    with pytest.raises(nbd.PipelineLoadError, match=match) as info:
        nbd.load_pipeline(pipe, lora=make(tmp_path, lora_folder))
    assert "lora=" in str(info.value)
    assert pipe.get_list_adapters() == {} and getattr(pipe, "_nbd_lora", None) is None


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), "1", True, None])
def test_lora_scale_must_be_a_finite_number(lora_folder, scale):
    pipe = tiny_sd_pipeline()
    with pytest.raises(ValueError, match="lora_scale must be a finite number"):
        nbd.load_pipeline(pipe, lora=lora_folder, lora_scale=scale)
    assert pipe.get_list_adapters() == {}
    nbd.load_pipeline(pipe, lora=lora_folder)
    with pytest.raises(ValueError, match="lora_scale must be a finite number"):
        nbd.set_lora_scale(pipe, scale)
    assert pipe._nbd_lora["scale"] == 1.0


def test_other_bad_lora_inputs(lora_folder):
    pipe = tiny_sd_pipeline()
    with pytest.raises(TypeError, match="lora must be"):
        nbd.load_pipeline(pipe, lora=42)
    with pytest.raises(ValueError, match="lora_scale=0.5 needs a LoRA"):
        nbd.load_pipeline(pipe, lora_scale=0.5)
    with pytest.raises(ValueError, match="no LoRA loaded by nbdiffuse"):
        nbd.set_lora_scale(pipe, 0.5)


@pytest.mark.parametrize("make, match", [
    ("tiny_sdxl_pipeline", "does not load into this StableDiffusionXLPipeline.*another model family"),
    ("tiny_sd3_pipeline", "holds no weights for any part of this StableDiffusion3Pipeline"),
    ("tiny_pixart_pipeline", "PixArtSigmaPipeline does not take LoRA weights"),
])
def test_a_lora_for_another_architecture_is_refused_clearly(lora_folder, make, match):
    import nbdiffuse.testing as testing

    pipe = getattr(testing, make)()
    before = nbd.trace(pipe, PROMPT, steps=2, seed=0).final_latents
    with pytest.raises(nbd.PipelineLoadError, match=f"lora={re.escape(repr(str(lora_folder)))}:? {match}"):
        nbd.load_pipeline(pipe, lora=lora_folder)
    assert getattr(pipe, "_nbd_lora", None) is None
    after = nbd.trace(pipe, PROMPT, steps=2, seed=0)
    assert torch.equal(after.final_latents, before) and after.params["lora"] is None, "nothing half-loaded"


def test_without_peft_lora_says_what_to_install(lora_folder, monkeypatch):
    import diffusers.utils

    monkeypatch.setattr(diffusers.utils, "USE_PEFT_BACKEND", False)
    with pytest.raises(LoraUnavailable, match=r'pip install "nbdiffuse\[lora\]"'):
        nbd.load_pipeline(tiny_sd_pipeline(), lora=lora_folder)


def test_a_text_encoder_lora_with_a_peft_older_than_transformers_takes_says_which_versions(
        te_lora_folder, lora_folder, base, monkeypatch):
    """transformers loads a text encoder's LoRA only with its MIN_PEFT_VERSION (0.22.0 from 5.24 on, while
    the newest peft was 0.21.2): refused before the pipeline is touched, naming both versions."""
    import importlib.metadata

    import transformers
    from packaging.version import Version
    from transformers.integrations import peft as transformers_peft

    installed = Version(importlib.metadata.version("peft"))
    needed = f"{installed.major}.{installed.minor + 1}.0"  # as transformers 5.24 did to peft 0.21
    if Version(transformers_peft.MIN_PEFT_VERSION) < Version(needed):
        monkeypatch.setattr(transformers_peft, "MIN_PEFT_VERSION", needed)
    needed = transformers_peft.MIN_PEFT_VERSION
    pipe = tiny_sd_pipeline()
    with pytest.raises(LoraUnavailable, match=rf"has text-encoder weights, and transformers "
                                              rf"{re.escape(transformers.__version__)} loads those only with peft "
                                              rf">= {re.escape(needed)}; peft {re.escape(str(installed))} is installed"):
        nbd.load_pipeline(pipe, lora=te_lora_folder)
    assert getattr(pipe, "_nbd_lora", None) is None and pipe.get_list_adapters() == {}
    assert torch.equal(run(pipe).final_latents, base), "nothing half-loaded"
    # a UNet-only LoRA goes through diffusers alone and still loads
    nbd.load_pipeline(pipe, lora=lora_folder)
    assert pipe._nbd_lora["components"] == ["unet"]


def test_the_scale_does_not_change_under_a_running_run(lora_folder):
    pipe = nbd.load_pipeline(tiny_sd_pipeline(), lora=lora_folder)
    held, release = threading.Event(), threading.Event()

    def hold():  # stands for a run: runs hold the pipeline's lock from start to end
        with pipe_lock(pipe):
            held.set()
            release.wait(60)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert held.wait(60)
        with pytest.raises(RuntimeError, match="a run is using this pipeline"):
            nbd.set_lora_scale(pipe, 0.5)
        with pytest.raises(RuntimeError, match="a run is using this pipeline"):
            nbd.load_pipeline(pipe, lora=lora_folder)
        assert pipe._nbd_lora["scale"] == 1.0
    finally:
        release.set()
        worker.join(60)
    nbd.set_lora_scale(pipe, 0.5, timeout=5)
    assert pipe._nbd_lora["scale"] == 0.5
