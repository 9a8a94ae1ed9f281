import os
import subprocess
import sys
import time

import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core import loading


@pytest.fixture(scope="module")
def sd_folder(sd_pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    sd_pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_local_folder_loads_and_traces_the_same(sd_folder, sd_pipe):
    pipe = nbd.load_pipeline(sd_folder, device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.unet.dtype == torch.float32
    a = nbd.trace(pipe, "red circle", steps=3, seed=1)
    b = nbd.trace(sd_pipe, "red circle", steps=3, seed=1)
    assert torch.equal(a.final_latents, b.final_latents)
    assert a.params["model"] == str(sd_folder)


def _hub_cache(sd_folder, tmp_path):
    """A local Hugging Face cache holding the tiny pipeline as the hub id 'nbd-test/tiny-sd'."""
    snapshot = tmp_path / "hub" / "models--nbd-test--tiny-sd" / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    os.symlink(sd_folder, snapshot)
    (tmp_path / "hub" / "models--nbd-test--tiny-sd" / "refs").mkdir()
    (tmp_path / "hub" / "models--nbd-test--tiny-sd" / "refs" / "main").write_text("0" * 40)
    return tmp_path / "hub"


def test_hub_id_resolves_from_the_local_cache_offline(sd_folder, tmp_path, monkeypatch):
    """A hub id goes through diffusers' from_pretrained; offline it is served from the HF cache."""
    cache = str(_hub_cache(sd_folder, tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    pipe = nbd.load_pipeline("nbd-test/tiny-sd", device="cpu")
    assert len(nbd.trace(pipe, "star", steps=2)) == 2


def test_loading_a_hub_id_hides_the_warning_about_an_argument_diffusers_passes(sd_folder, tmp_path):
    """diffusers passes huggingface_hub an argument it has retired, and huggingface_hub warns about
    it on every hub load; nbdiffuse drops that one warning. Checked in a fresh interpreter, as a
    notebook kernel would run it (pytest resets warning filters for each test)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(_hub_cache(sd_folder, tmp_path)))
    code = "import nbdiffuse as nbd; nbd.load_pipeline('nbd-test/tiny-sd', device='cpu'); print('loaded')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "loaded", done.stderr[-2000:]
    assert "local_dir_use_symlinks" not in done.stderr, done.stderr[-2000:]


def test_unreachable_hub_id_fails_fast_and_clearly(monkeypatch):
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    began = time.monotonic()
    with pytest.raises(nbd.PipelineLoadError, match="could not load 'nobody-here/no-such-model'.*offline"):
        nbd.load_pipeline("nobody-here/no-such-model")
    assert time.monotonic() - began < 60


def test_pipeline_object_is_checked_and_returned_as_is(sd_pipe):
    assert nbd.load_pipeline(sd_pipe) is sd_pipe


def test_embedded_model_missing_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "EMBEDDED_MODEL", tmp_path / "nowhere")
    with pytest.raises(nbd.EmbeddedModelMissing, match="embedded shapes model is not shipped"):
        nbd.load_pipeline()


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp, "not a diffusers model folder"),
    (lambda tmp: (tmp / "weights.bin").write_bytes(b"x") and tmp / "weights.bin", "is a file"),
    (lambda tmp: "not a hub id!", "neither an existing folder nor a hub id"),
])
def test_bad_sources(tmp_path, make, match):
    with pytest.raises(nbd.PipelineLoadError, match=match):
        nbd.load_pipeline(make(tmp_path))


def test_pickle_weights_are_refused(sd_pipe, tmp_path):
    sd_pipe.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(nbd.PipelineLoadError, match="could not load"):
        nbd.load_pipeline(tmp_path / "pickled", device="cpu")


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "tpu"}, "device must be"),
    ({"device": "cuda"}, "no CUDA GPU"),
    ({"dtype": "int8"}, "dtype must be"),
    ({"dtype": torch.int32}, "dtype must be"),
])
def test_bad_device_and_dtype(sd_folder, kwargs, match):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=match):
        nbd.load_pipeline(sd_folder, **kwargs)


def test_source_type_and_auto_choices():
    with pytest.raises(TypeError, match="source must be"):
        nbd.load_pipeline(42)
    assert loading.resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert loading.resolve_dtype(None, torch.device("cuda"), "StableDiffusionPipeline") == torch.float16
    assert loading.resolve_dtype(None, torch.device("cuda"), "FluxPipeline") == torch.bfloat16
    assert loading.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_trace_refuses_what_is_not_a_supported_pipeline(sd_pipe):
    with pytest.raises(TypeError, match="pipe must be a supported diffusers pipeline"):
        nbd.trace(sd_pipe.unet, "x")
    with pytest.raises(TypeError, match="pipe must be"):
        nbd.trace(None, "x")


def test_speaks_shapes_tells_the_embedded_model_from_others(sd_folder, sd_pipe):
    assert nbd.speaks_shapes(nbd.load_pipeline()) is True
    assert nbd.speaks_shapes(sd_pipe) is False
    assert nbd.speaks_shapes(nbd.load_pipeline(str(sd_folder))) is False
