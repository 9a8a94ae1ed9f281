"""Saved runs carry their pictures: each step's frames as the model's own VAE draws them, in the .nbd file."""
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import nbdiffuse as nbd
from nbdiffuse.core.trajfile import FORMAT_VERSION

SHAPES_PROMPT = "big red circle on the left, white background"
BAR = 4.0  # of 255: a loaded run's frames against decoder="full" on the run's own pipeline, mean absolute error


@pytest.fixture(scope="module")
def shapes_pipe():
    return nbd.load_pipeline()


@pytest.fixture(scope="module")
def shapes_run(shapes_pipe):
    return nbd.trace(shapes_pipe, SHAPES_PROMPT, steps=6, guidance=5.0, seed=0)


@pytest.fixture(scope="module")
def noise_run(sd_pipe):
    """Random weights draw noise-like pictures: the hardest case for a lossy codec."""
    return nbd.trace(sd_pipe, "a red circle", steps=4, guidance=3.0, seed=1, height=64, width=64)


def mean_error(a, b) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


def file_parts(path):
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return tensors, header, json.loads(header["meta"])


def rewrite(path, out, tensors=None, meta=None, version=None):
    """A copy of the file at `path` with tensors / meta changed (dicts of replacements; None values delete)."""
    old_tensors, header, old_meta = file_parts(path)
    for name, value in (tensors or {}).items():
        old_tensors.pop(name, None) if value is None else old_tensors.__setitem__(name, value)
    for name, value in (meta or {}).items():
        old_meta.pop(name, None) if value is None else old_meta.__setitem__(name, value)
    header["meta"] = json.dumps(old_meta)
    if version is not None:
        header["format_version"] = str(version)
    save_file(old_tensors, str(out), metadata=header)
    return out


def as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


@pytest.mark.parametrize("run", ["shapes_run", "noise_run"])
def test_a_loaded_run_shows_its_models_own_pictures(run, request, tmp_path):
    traj = request.getfixturevalue(run)
    traj.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert loaded.pipe is None and loaded.has_saved_frames
    size = (traj.params["width"], traj.params["height"])
    for k in range(len(traj)):
        for view in ("x0", "xt"):
            shown = loaded.image(k, view)  # the default decoder, "auto": the saved frame
            full = traj.image(k, view, decoder="full")
            assert loaded.decoder_used(k, view) == "saved" and shown.size == full.size == size
            assert mean_error(shown, full) <= BAR, (run, k, view)
            # "full" without the pipeline is the saved frame: it is the full VAE's picture
            assert loaded.image(k, view, decoder="full").tobytes() == shown.tobytes()
            # and it is truer than what the run showed before it carried pictures
            assert mean_error(loaded.image(k, view, decoder="approx"), full) > mean_error(shown, full)
    assert loaded.final_image.tobytes() == loaded.image(-1, "x0").tobytes()


def test_the_auto_decoder_prefers_saved_then_full_then_approx(shapes_run, shapes_pipe, tmp_path):
    assert shapes_run.decoder_used(2) == "full"  # a live run: its pipeline is at hand
    assert shapes_run.image(2).tobytes() == shapes_run.image(2, decoder="full").tobytes()
    shapes_run.save(tmp_path / "run.nbd")
    shapes_run.save(tmp_path / "bare.nbd", frames=False)
    attached = nbd.Trajectory.load(tmp_path / "run.nbd", pipe=shapes_pipe)
    assert attached.decoder_used(2) == "saved" and attached.decoder_used(2, decoder="full") == "full"
    assert attached.image(2, decoder="full").tobytes() == shapes_run.image(2, decoder="full").tobytes()
    assert attached.final_image.tobytes() == shapes_run.final_image.tobytes()  # with the pipeline: the VAE's own
    bare = nbd.Trajectory.load(tmp_path / "bare.nbd")
    assert not bare.has_saved_frames and bare.saved_frame(2) is None and bare.decoder_used(2) == "approx"
    assert bare.image(2).tobytes() == bare.image(2, decoder="approx").tobytes()
    with pytest.raises(ValueError, match="attach"):
        bare.image(2, decoder="full")
    with pytest.raises(ValueError, match="decoder must be one of 'auto', 'approx', 'full', 'tiny'; got 'best'"):
        bare.image(2, decoder="best")
    with pytest.raises(ValueError, match="decoder must be one of 'auto', 'approx', 'full', 'tiny'"):
        bare.guided_image(2, 5.0, decoder="vae")


def test_what_if_at_the_guidance_used_shows_the_saved_frame(shapes_run, tmp_path):
    shapes_run.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert loaded.guided_image(3, 5.0, decoder="auto").tobytes() == loaded.image(3).tobytes()
    assert loaded.guided_image(3, 5.0).tobytes() == loaded.image(3, decoder="approx").tobytes()  # default approx
    other = loaded.guided_image(3, 9.0, decoder="auto")  # re-weighed: no saved frame, no VAE: approx
    assert other.tobytes() == loaded.guided_image(3, 9.0, decoder="approx").tobytes()


def test_save_decodes_each_picture_once_in_batches(shapes_pipe, tmp_path):
    traj = nbd.trace(shapes_pipe, SHAPES_PROMPT, steps=6, guidance=5.0, seed=3)
    traj.image(2, "xt", decoder="full")  # in the run's decode cache already
    batches = []
    hook = shapes_pipe.vae.decoder.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
    try:
        traj.save(tmp_path / "run.nbd")
    finally:
        hook.remove()
    # 12 frames, less the cached one, less the last step's x_t: x0 and x_t agree to rounding there (Euler)
    assert sum(batches) == 10 and max(batches) > 1
    tensors, header, meta = file_parts(tmp_path / "run.nbd")
    # version 2: versions 3 to 6 add only what watched pipelines, PAG runs, inpainting runs and runs from a picture
    # record (test_generic.py, test_pag_live.py, test_inpaint.py, test_inpaint_loop.py), written where a run has it
    assert header["format_version"] == "2" and FORMAT_VERSION == 6
    assert sorted(n for n in tensors if n.startswith("frames.")) == sorted(
        [f"frames.{k}.x0" for k in range(6)] + [f"frames.{k}.xt" for k in range(5)])
    assert meta["frames"] == {"xt_is_x0": [5]}
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert loaded.saved_frame(-1, "xt") == loaded.saved_frame(-1, "x0")
    assert Image.open(io.BytesIO(loaded.saved_frame(0, "xt"))).format in ("WEBP", "JPEG", "PNG")


def test_frames_false_writes_a_smaller_file_and_a_resave_keeps_the_frames(shapes_run, tmp_path):
    shapes_run.save(tmp_path / "with.nbd")
    shapes_run.save(tmp_path / "without.nbd", frames=False)
    assert (tmp_path / "without.nbd").stat().st_size < (tmp_path / "with.nbd").stat().st_size
    tensors, _, meta = file_parts(tmp_path / "without.nbd")
    assert not any(n.startswith("frames.") for n in tensors) and meta["frames"] is None
    loaded = nbd.Trajectory.load(tmp_path / "with.nbd")
    loaded.save(tmp_path / "again.nbd")  # no pipeline: the frames it carries, as they are
    again = nbd.Trajectory.load(tmp_path / "again.nbd")
    assert again.saved_frames == loaded.saved_frames and len(again.saved_frames) == 12
    with pytest.raises(TypeError, match="frames must be True or False, got 'yes'"):
        shapes_run.save(tmp_path / "bad.nbd", frames="yes")


def test_a_branch_of_a_loaded_run_keeps_the_pictures_of_the_steps_it_shares(shapes_run, shapes_pipe, tmp_path):
    shapes_run.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd", pipe=shapes_pipe)
    child = nbd.branch(shapes_pipe, loaded, at=2, guidance=9.0)
    assert [child.decoder_used(k) for k in range(6)] == ["saved"] * 3 + ["full"] * 3
    assert child.saved_frame(2) == loaded.saved_frame(2)


def test_an_x_t_only_run_stores_x_t_and_a_run_without_previews_none(xt_only_pipe, tmp_path):
    traj = nbd.trace(xt_only_pipe, "a red circle", steps=2, guidance=2.0, seed=0, height=16, width=160)
    traj.save(tmp_path / "xt.nbd")
    tensors, _, _ = file_parts(tmp_path / "xt.nbd")
    assert sorted(n for n in tensors if n.startswith("frames.")) == ["frames.0.xt", "frames.1.xt"]
    loaded = nbd.Trajectory.load(tmp_path / "xt.nbd")
    assert loaded.has_saved_frames and loaded.decoder_used(1, "xt") == "saved"
    assert mean_error(loaded.image(1, "xt"), traj.image(1, "xt", decoder="full")) <= BAR
    # x0 frames in an x_t-only run's file are refused by name
    x0 = as_tensor(loaded.saved_frame(1, "xt"))
    with pytest.raises(nbd.TrajectoryFileError, match="'frames.1.x0' is a frame of view 'x0'"):
        nbd.Trajectory.load(rewrite(tmp_path / "xt.nbd", tmp_path / "x0.nbd", tensors={"frames.1.x0": x0}))
    # a run whose latents have no picture form (packed, previews False) stores none
    unpacked = nbd.Trajectory(params={**traj.params, "capabilities": {**traj.capabilities, "previews": False}},
                                   initial_latents=traj.initial_latents, steps=traj.steps, pipe=xt_only_pipe)
    unpacked.save(tmp_path / "packed.nbd")
    tensors, _, meta = file_parts(tmp_path / "packed.nbd")
    assert not any(n.startswith("frames.") for n in tensors) and meta["frames"] == {"xt_is_x0": []}


def test_a_version_1_file_still_loads(shapes_run, shapes_pipe, tmp_path):
    shapes_run.save(tmp_path / "v2.nbd", frames=False)
    v1 = rewrite(tmp_path / "v2.nbd", tmp_path / "v1.nbd", meta={"frames": None}, version=1)
    tensors, header, meta = file_parts(v1)
    assert header["format_version"] == "1" and "frames" not in meta  # as version 1 wrote them
    loaded = nbd.Trajectory.load(v1)
    assert len(loaded) == 6 and not loaded.has_saved_frames and loaded.decoder_used(-1) == "approx"
    assert loaded.image(-1).size == (64, 64)
    attached = nbd.Trajectory.load(v1, pipe=shapes_pipe)
    assert attached.image(-1).tobytes() == shapes_run.image(-1, decoder="full").tobytes()


def _png_declaring(width: int, height: int) -> bytes:
    """A real 1 x 1 PNG whose header claims width x height (a decompression bomb's trick)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # chunk type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.fixture(scope="module")
def saved_file(shapes_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "run.nbd"
    shapes_run.save(path)
    return path


@pytest.mark.parametrize("tensors, meta, match", [
    ({"frames.2.x0": as_tensor(b"not a picture at all")}, None, r"'frames.2.x0' is not PNG, WebP or JPEG bytes"),
    ({"frames.1.xt": as_tensor(_png_declaring(65, 64))}, None,
     r"'frames.1.xt' declares a 65 x 64 picture, not the run's 64 x 64"),
    ({"frames.0.x0": as_tensor(_png_declaring(100_000, 100_000))}, None, r"'frames.0.x0' declares a picture of over"),
    ({"frames.0.x0": as_tensor(_png_declaring(4096, 4096))}, None, r"'frames.0.x0' declares a 4096 x 4096 picture"),
    ({"frames.6.x0": as_tensor(b"x")}, None, r"'frames.6.x0' is not a frame of this run.*step 0..5"),
    ({"frames.1.noise": as_tensor(b"x")}, None, r"'frames.1.noise' is not a frame of this run"),
    ({"frames.01.x0": as_tensor(b"x")}, None, r"'frames.01.x0' is not a frame of this run"),
    ({"frames.1.x0": torch.zeros(8)}, None, r"'frames.1.x0' must hold image bytes \(1-D uint8\), got torch.float32"),
    ({"frames.4.x0": None}, {"frames": {"xt_is_x0": [5, 4]}}, r"xt_is_x0 lists 4, which is not a step with an x0"),
    (None, {"frames": {"xt_is_x0": "5"}}, r"meta 'frames' must be an object with a list 'xt_is_x0'"),
])
def test_broken_frames_are_refused_by_name(saved_file, tmp_path, tensors, meta, match):
    broken = rewrite(saved_file, tmp_path / "broken.nbd", tensors=tensors, meta=meta)
    with pytest.raises(nbd.TrajectoryFileError, match="has a broken saved frame: .*" + match):
        nbd.Trajectory.load(broken)


def test_frames_are_decoded_when_shown_not_at_load(saved_file, tmp_path):
    """A frame whose header is sound but whose pixels are cut short loads, and says so when shown."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "PNG")
    cut = buffer.getvalue()[:600]
    loaded = nbd.Trajectory.load(rewrite(saved_file, tmp_path / "cut.nbd", tensors={"frames.3.x0": as_tensor(cut)}))
    assert loaded.image(2).size == (64, 64)
    with pytest.raises(nbd.TrajectoryFileError, match="saved frame 'frames.3.x0' of this run is corrupt"):
        loaded.image(3)


def test_a_saved_file_gets_the_mode_a_users_file_gets(shapes_run, tmp_path):
    old = os.umask(0o022)
    try:
        shapes_run.save(tmp_path / "a.nbd", frames=False)
        assert (tmp_path / "a.nbd").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        shapes_run.save(tmp_path / "b.nbd", frames=False)
        assert (tmp_path / "b.nbd").stat().st_mode & 0o777 == 0o600
        os.chmod(tmp_path / "a.nbd", 0o640)
        shapes_run.save(tmp_path / "a.nbd", frames=False)  # written over: it keeps its mode, as with open()
        assert (tmp_path / "a.nbd").stat().st_mode & 0o777 == 0o640
        os.umask(0o022)
        (tmp_path / "c.nbd.tmp").write_bytes(b"left by a save that failed")
        os.chmod(tmp_path / "c.nbd.tmp", 0o600)
        shapes_run.save(tmp_path / "c.nbd", frames=False)
        assert (tmp_path / "c.nbd").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    assert not list(tmp_path.glob("*.tmp"))
