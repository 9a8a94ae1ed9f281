import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import nbdiffuse as nbd
from nbdiffuse.core.trajfile import FORMAT, FORMAT_VERSION

PROMPT = "purple triangle in the center"


@pytest.fixture(scope="module")
def traj(sd_pipe):
    return nbd.trace(sd_pipe, PROMPT, steps=4, guidance=[3.0, 3.0, 1.0, 3.0], seed=9, scheduler="heun")


def test_round_trip_keeps_everything(traj, tmp_path):
    path = tmp_path / "sub" / "run.nbd"
    traj.save(path)
    loaded = nbd.Trajectory.load(path)
    assert loaded.params == traj.params and len(loaded) == len(traj) and loaded.stopped == traj.stopped
    assert torch.equal(loaded.initial_latents, traj.initial_latents)
    for a, b in zip(loaded, traj):
        assert (a.index, a.timestep, a.sigma, a.guidance, a.x0_coeff, a.xt_scale) == \
               (b.index, b.timestep, b.sigma, b.guidance, b.x0_coeff, b.xt_scale)
        for name in ("latents", "pred_x0", "eps_cond"):
            assert torch.equal(getattr(a, name), getattr(b, name))
        assert (a.eps_uncond is None) == (b.eps_uncond is None)
        assert len(a.extra_outputs) == len(b.extra_outputs)
    # Without its pipeline a loaded run shows the pictures it carries (tests/core/test_saved_frames.py),
    # its approx frames, and re-weighs guidance...
    assert loaded.image(1).size == loaded.image(1, decoder="approx").size == (16, 16)
    torch.testing.assert_close(loaded.guided_x0(0, 6.0), traj.guided_x0(0, 6.0))
    # ...and saved without pictures, a full decode says what it needs.
    traj.save(tmp_path / "bare.nbd", frames=False)
    with pytest.raises(ValueError, match="attach"):
        nbd.Trajectory.load(tmp_path / "bare.nbd").image(1, decoder="full")


def test_attach_enables_full_decode(traj, sd_pipe, tmp_path):
    traj.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd", pipe=sd_pipe)
    assert loaded.image(-1, decoder="full").tobytes() == traj.image(-1, decoder="full").tobytes()


def test_saved_file_is_plain_safetensors_with_json(traj, tmp_path):
    path = tmp_path / "run.nbd"
    traj.save(path)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert header["__metadata__"]["format"] == FORMAT
    assert json.loads(header["__metadata__"]["meta"])["params"]["prompt"] == PROMPT
    assert b"pickle" not in path.read_bytes()[:8 + header_len]


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x00" * 3, "not a safetensors file"),
    (b"this is not a trajectory at all, just text" * 10, "not a safetensors file"),
])
def test_corrupt_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "bad.nbd"
    path.write_bytes(content)
    with pytest.raises(nbd.TrajectoryFileError, match=message):
        nbd.Trajectory.load(path)


def test_foreign_newer_and_truncated_files(traj, tmp_path):
    foreign = tmp_path / "foreign.nbd"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(nbd.TrajectoryFileError, match="not an nbdiffuse trajectory"):
        nbd.Trajectory.load(foreign)
    newer = tmp_path / "newer.nbd"
    save_file({"x": torch.zeros(2)}, str(newer), metadata={"format": FORMAT,
                                                            "format_version": str(FORMAT_VERSION + 1), "meta": "{}"})
    with pytest.raises(nbd.TrajectoryFileError, match="newer nbdiffuse"):
        nbd.Trajectory.load(newer)
    broken = tmp_path / "broken.nbd"
    save_file({"x": torch.zeros(2)}, str(broken), metadata={"format": FORMAT, "format_version": "1",
                                                             "meta": "{not json"})
    with pytest.raises(nbd.TrajectoryFileError, match="corrupt"):
        nbd.Trajectory.load(broken)
    good = tmp_path / "good.nbd"
    traj.save(good)
    truncated = tmp_path / "truncated.nbd"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(nbd.TrajectoryFileError):
        nbd.Trajectory.load(truncated)
    with pytest.raises(FileNotFoundError, match="no such trajectory"):
        nbd.Trajectory.load(tmp_path / "missing.nbd")


def test_images_views_and_sizes(traj):
    assert traj.image(0, view="xt", decoder="approx", size="latent").size == (8, 8)
    assert traj.image(0, size=64).size == (64, 64)
    assert traj.image(0, size=(32, 16)).size == (32, 16)
    assert traj.final_image.size == (16, 16)
    assert traj.image(-1).tobytes() == traj.image(len(traj) - 1).tobytes()
    # x_t early on is mostly noise, x0 is not: the two views differ.
    assert traj.image(0, view="xt").tobytes() != traj.image(0, view="x0").tobytes()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"k": 4}, ValueError, "k must be a step index"),
    ({"k": -5}, ValueError, "k must be a step index"),
    ({"k": "1"}, TypeError, "k must be an int"),
    ({"view": "noise"}, ValueError, "view must be one of"),
    ({"decoder": "vae"}, ValueError, "decoder must be one of 'auto', 'approx', 'full', 'tiny'; got 'vae'"),
    ({"size": -3}, ValueError, "size must be"),
])
def test_image_bad_input(traj, kwargs, error, match):
    with pytest.raises(error, match=match):
        traj.image(**kwargs)


def test_gif_export(traj, tmp_path):
    traj.to_gif(tmp_path / "run.gif", view="xt", fps=5)
    with Image.open(tmp_path / "run.gif") as gif:
        assert gif.n_frames == len(traj) and gif.size == (256, 256)
    with pytest.raises(ValueError, match="fps"):
        traj.to_gif(tmp_path / "bad.gif", fps=0)


def test_png_carries_the_parameters(traj, tmp_path):
    traj.to_png(tmp_path / "step.png", k=2, view="x0")
    with Image.open(tmp_path / "step.png") as png:
        text = png.text
    assert text["parameters"].startswith(PROMPT + "\n")
    assert "Steps: 4, Sampler: Heun" in text["parameters"] and "Seed: 9" in text["parameters"]
    assert json.loads(text["nbdiffuse"])["params"] == traj.params


def test_html_export_escapes_user_text(sd_pipe, tmp_path):
    evil = '<img src=x onerror=alert(1)></script><script>alert(2)</script>'
    traj = nbd.trace(sd_pipe, evil, negative_prompt="<b>bold</b>", steps=3, seed=1)
    traj.to_html(tmp_path / "run.html")
    page = (tmp_path / "run.html").read_text()
    assert "<img src=x" not in page and "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("data:image/png;base64,") == 6


def test_gif_step_range(traj, tmp_path):
    traj.to_gif(tmp_path / "part.gif", start=1, stop=3)
    with Image.open(tmp_path / "part.gif") as gif:
        assert gif.n_frames == 2
    with pytest.raises(ValueError, match="start/stop"):
        traj.to_gif(tmp_path / "bad.gif", start=3, stop=1)
