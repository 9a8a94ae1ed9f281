"""Hostile inputs to the core: picture files, model sources, prompt text, model mismatches, save targets.

Every refusal is a ValueError/TypeError (or a documented subclass) naming the parameter and the value
(shortened), raised before any model work.
"""
from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.loading import PipelineLoadError
from nbdiffuse.core.model_identity import ModelMismatchWarning
from nbdiffuse.core.picture_file import open_picture

PROMPT = "a red circle"


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (its data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


HOSTILE_FILES = {
    "bomb.png": png_declaring(60000, 60000),  # DecompressionBombError in Pillow
    "big.png": png_declaring(10000, 9000),  # under Pillow's bomb limit, over ours
    "strip.png": encoded(Image.new("RGB", (6000, 8)), "PNG"),  # one side over 4096
    "tall.gif": encoded(Image.new("P", (4, 5000)), "GIF"),
    "text.png": b"this is not a picture at all",  # UnidentifiedImageError
    "empty.png": b"",
    "cut.png": encoded(Image.new("RGB", (64, 64), (9, 80, 200)), "PNG")[:70],  # truncated body
    "cut.jpg": encoded(Image.new("RGB", (64, 64), (9, 80, 200)), "JPEG")[:300],
    "page.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",  # a format we never parse
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_picture_files_are_refused_by_trace(sd_pipe, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(HOSTILE_FILES[name])
    with pytest.raises(ValueError, match=r"^image: ") as caught:
        nbd.trace(sd_pipe, PROMPT, steps=2, image=str(path))
    assert "allowed: a PNG, JPEG" in str(caught.value) and name in str(caught.value)
    with pytest.raises(ValueError, match=r"^start: \d+ bytes starting|^start: could not read \d+ bytes"):
        open_picture(HOSTILE_FILES[name], "start")


@pytest.mark.parametrize("name", ["strip.png", "tall.gif", "big.png"])
def test_a_side_over_4096_is_refused_from_bytes_too(name):
    with pytest.raises(ValueError, match=r"each side must be 1 to 4096 pixels"):
        open_picture(HOSTILE_FILES[name], "start")


@pytest.mark.parametrize("image", [Image.new("RGB", (6000, 8)), Image.new("RGB", (8, 4097)),
                                   np.zeros((4100, 4, 3), np.uint8)], ids=["pil-wide", "pil-tall", "array"])
def test_in_memory_pictures_have_the_same_side_limit(sd_pipe, image):
    with pytest.raises(ValueError, match=r"^image: a \d+ x \d+ picture: each side must be 1 to 4096"):
        nbd.trace(sd_pipe, PROMPT, steps=2, image=image)


@pytest.mark.parametrize("path", ["a" * 5000 + ".png", "x\0y.png", "/"], ids=["too-long", "nul", "folder"])
def test_picture_paths_the_os_refuses(sd_pipe, path):
    with pytest.raises(ValueError, match=r"^image: could not read") as caught:
        nbd.trace(sd_pipe, PROMPT, steps=2, image=path)
    assert len(str(caught.value)) < 600, "the value is shortened"


@pytest.mark.parametrize("source, reason", [
    ("a" * 5000, "the OS refuses a name this long"),
    ("a/" * 3000, "the OS refuses a name this long"),
    ("~no-such-user-here/model", "cannot be looked up as a file or folder"),
    ("org/" + "m" * 120, r"\(124 characters\) is neither an existing file or folder nor a hub id"),
])
def test_model_sources_the_os_or_the_hub_refuse(source, reason):
    with pytest.raises(PipelineLoadError, match=reason) as caught:
        nbd.load_pipeline(source)
    assert str(caught.value).startswith("source=") and len(str(caught.value)) < 600
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("lora, reason", [
    ("a" * 5000, "^lora=.*the OS refuses a name this long"),
    ("~no-such-user-here/x.safetensors", "^lora=.* cannot be looked up as a file or folder"),
    ("org/" + "l" * 100, r"^lora=.*\(104 characters\) is neither an existing file or folder nor a hub id"),
])
def test_lora_sources_the_os_or_the_hub_refuse(sd_pipe, lora, reason):
    with pytest.raises(PipelineLoadError, match=reason):
        nbd.load_pipeline(sd_pipe, lora=lora)


@pytest.mark.parametrize("field, text", [("prompt", "a red \udc80 circle"), ("prompt", "\ud800"),
                                         ("negative_prompt", "blurry \udfff")])
def test_text_that_is_not_utf8_is_refused_before_the_tokenizer(sd_pipe, field, text):
    kwargs = {"prompt": PROMPT, field: text}
    with pytest.raises(ValueError, match=f"^{field} must be text that can be written as UTF-8"):
        nbd.trace(sd_pipe, steps=2, **kwargs)


def test_a_branch_with_a_lone_surrogate_is_refused(sd_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=3, seed=0)
    with pytest.raises(ValueError, match="^prompt must be text that can be written as UTF-8"):
        nbd.branch(sd_pipe, traj, at=0, prompt="x\udc80")


class MyStableDiffusion(StableDiffusionPipeline):
    """A user's own subclass: encode_prompt (and its log) stays in diffusers' module."""


@pytest.mark.parametrize("subclass", [False, True], ids=["sd", "user-subclass"])
def test_a_long_prompt_is_one_notice_not_a_flood(sd_pipe, subclass):
    if subclass:
        sd_pipe = MyStableDiffusion(**sd_pipe.components)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    for name in ("diffusers", "transformers"):  # where the pipelines' and tokenizers' loggers propagate
        logging.getLogger(name).addHandler(handler)
    try:
        long = "big red circle " * 4000  # 60 000 characters
        traj = nbd.trace(sd_pipe, long, steps=1, guidance=2.0)
        logged = sum(len(record.getMessage()) for record in records)
        assert logged < 2000, f"{logged} characters logged"
        assert any("it was truncated" in notice and len(notice) < 400 for notice in traj.notices)
        # A call of the user's own still logs as diffusers does: the filter holds only while nbdiffuse encodes.
        sd_pipe.encode_prompt(long, "cpu", 1, False)
        assert any("truncated" in record.getMessage() for record in records)
    finally:
        for name in ("diffusers", "transformers"):
            logging.getLogger(name).removeHandler(handler)


def test_branch_with_another_model_of_the_family_warns_and_notes(sd_pipe, sd_vpred_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=3, seed=0)
    with pytest.warns(ModelMismatchWarning, match="steps 1 to 1 came from"):
        child = nbd.branch(sd_vpred_pipe, traj, at=0)
    assert sum("came from" in notice for notice in child.notices) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        same = nbd.branch(sd_pipe, traj, at=0)
    assert not any("came from" in notice for notice in same.notices)


def test_branch_across_families_is_refused_even_with_equal_channels(sd_pipe, sdxl_pipe):
    traj = nbd.trace(sd_pipe, PROMPT, steps=3, seed=0)
    assert traj.initial_latents.shape[1] == 4 == sdxl_pipe.unet.config.in_channels
    with pytest.raises(ValueError, match=r"made by StableDiffusionPipeline \(stable-diffusion\); pipe now holds "
                                         r"StableDiffusionXLPipeline \(stable-diffusion-xl\).*cannot continue"):
        nbd.branch(sdxl_pipe, traj, at=0)


def test_attaching_another_family_is_refused(sd_pipe, sdxl_pipe, tmp_path):
    path = tmp_path / "run.nbd"
    nbd.trace(sd_pipe, PROMPT, steps=2, seed=0).save(path)
    with pytest.raises(ValueError, match="cannot decode it with its VAE"):
        nbd.Trajectory.load(path, pipe=sdxl_pipe)
    assert nbd.Trajectory.load(path, pipe=sd_pipe).pipe is sd_pipe


@pytest.mark.parametrize("target, reason", [
    (".", "it names no file"),
    ("folder", "it is a folder"),
    ("folder/", "it is a folder"),
    ("afile/run.nbd", "is a file, not a folder"),
    ("run\0.nbd", "NUL"),
    ("b" * 4000 + ".nbd", "OSError"),
])
def test_save_to_what_takes_no_file_leaves_nothing(sd_pipe, tmp_path, monkeypatch, target, reason):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    traj = nbd.trace(sd_pipe, PROMPT, steps=2, seed=0)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=reason):
        traj.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no <path>.tmp left behind"
    with pytest.raises(TypeError, match="path must be a file path"):
        traj.save(3)
