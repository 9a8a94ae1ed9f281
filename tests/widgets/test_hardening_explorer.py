"""The Explorer and the teaching widgets against hostile settings, pictures and saved runs."""
from __future__ import annotations

import struct
import zlib

import pytest

import nbdiffuse as nbd
from nbdiffuse.widgets import Explorer


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


BAD_SETTINGS = [
    ("max_runs", "x", TypeError, "max_runs must be a whole number"),
    ("max_runs", 0, ValueError, "max_runs must be >= 1"),
    ("max_runs", 1.5, TypeError, "max_runs must be a whole number"),
    ("steps", 0, ValueError, "steps must be an int between 1 and 1000"),
    ("steps", 10**6, ValueError, "steps must be an int between 1 and 1000"),
    ("seed", -1, ValueError, "seed must be an int between 0"),
    ("guidance", float("nan"), ValueError, "guidance must be a finite number"),
    ("guidance", float("inf"), ValueError, "guidance must be a finite number"),
    ("guidance", -0.5, ValueError, "guidance must be >= 0"),
    ("guidance_max", 0.0, ValueError, "guidance_max .* must be a finite number > 0"),
    ("guidance_max", float("nan"), ValueError, "guidance_max .* must be a finite number > 0"),
    ("guidance_max", float("inf"), ValueError, "guidance_max .* must be a finite number > 0"),
    ("strength", 1.5, ValueError, "strength must be a number in \\(0, 1\\]"),
    ("strength", float("nan"), ValueError, "strength must be a number in \\(0, 1\\]"),
    ("view", "upside-down", ValueError, "view must be one of 'both', 'x0', 'xt'"),
    ("preview", "psychic", ValueError, "preview must be one of"),
    ("frame", -2, ValueError, "frame must be a step index"),
    ("height", 7, ValueError, "height must be a positive multiple of"),
    ("width", 8192, ValueError, "width must be at most 4096 pixels"),
    ("scheduler", "warp", ValueError, "scheduler must be one of 'euler'"),
    ("prompt", "half a \udc80 character", ValueError, "prompt must be text that can be written as UTF-8"),
    ("negative_prompt", "\ud83d", ValueError, "negative_prompt must be text that can be written as UTF-8"),
]


@pytest.mark.parametrize("name, value, kind, message", BAD_SETTINGS, ids=[f"{b[0]}={b[1]!r}" for b in BAD_SETTINGS])
def test_every_setting_is_checked_when_set(explorer, name, value, kind, message):
    ex, fe = explorer
    before = getattr(ex, name)
    with pytest.raises(kind, match=message):
        setattr(ex, name, value)
    assert getattr(ex, name) == before, "a refused value leaves the setting as it was"


def test_a_refused_max_runs_leaves_the_worker_alive(explorer):
    ex, fe = explorer
    with pytest.raises(TypeError):
        ex.max_runs = "x"
    ex.max_runs = 1
    for seed in (1, 2):
        ex.generate(seed=seed, steps=2)
        assert ex.wait(120) and ex.status == "done", ex.error
    assert len(ex.history) == 1 and ex.runs_dropped == 1


@pytest.mark.parametrize("data, reason", [
    (png_declaring(60000, 60000), "declares over"),
    (png_declaring(6000, 8), "each side must be 1 to 4096"),
    (b"GIF89a not really", "not a picture Pillow can read"),
])
def test_start_from_hostile_bytes_is_refused_naming_source(explorer, data, reason):
    ex, fe = explorer
    with pytest.raises(ValueError, match=f"^source: .*{reason}"):
        ex.start_from(data)
    assert ex.start_thumb == b"" and not ex.use_picture


def test_teaching_widgets_refuse_hostile_pictures(pipe, tmp_path):
    from nbdiffuse.widgets.teaching import ForwardExplorer, LatentView

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(60000, 60000))
    text = tmp_path / "notes.png"
    text.write_text("a text file with a picture's name")
    with pytest.raises(ValueError, match="^image: could not read .*bomb.png"):
        LatentView(str(bomb), pipe=pipe)
    with pytest.raises(ValueError, match="^image: could not read .*notes.png.*UnidentifiedImageError"):
        ForwardExplorer(str(text), pipe=pipe, positions=2)
    with pytest.raises(ValueError, match="^image: could not read 12 bytes"):
        LatentView(b"\x89PNG\r\n\x1a\n\0\0\0\0", pipe=pipe)


def saved_pair(pipe, tmp_path):
    traj = nbd.trace(pipe, "a red circle", steps=2, seed=0)
    a, b = tmp_path / "a.nbd", tmp_path / "b.nbd"
    traj.params.update(id="runa", parent="runb", branched_at=0)
    traj.save(a)
    traj.params.update(id="runb", parent="runa", branched_at=0)
    traj.save(b)
    return a, b


def test_runs_that_are_each_others_parents_are_refused(pipe, tmp_path):
    a, b = saved_pair(pipe, tmp_path)
    with pytest.raises(ValueError, match="each other's parents"):
        Explorer.from_files([a, b])
    with pytest.raises(ValueError, match="two runs have the id 'runa'"):
        Explorer.from_files([a, a])


def test_from_files_with_another_family_is_refused(pipe, sdxl_pipe, tmp_path):
    path = tmp_path / "run.nbd"
    nbd.trace(pipe, "a red circle", steps=2, seed=0).save(path)
    with pytest.raises(ValueError, match=r"\(stable-diffusion\); pipe now holds StableDiffusionXLPipeline "
                                         r"\(stable-diffusion-xl\).*cannot decode it with its VAE"):
        Explorer.from_files(path, pipe=sdxl_pipe)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_an_explorer_whose_construction_failed_half_way_closes_quietly(pipe, monkeypatch):
    import gc

    from nbdiffuse.widgets.explorer import widget

    def broken(*args, **kwargs):
        raise RuntimeError("the browser link could not be made")

    from ipywidgets.widgets.widget import _instances

    def explorers():
        return {id(w) for w in list(_instances.values()) if isinstance(w, widget.Explorer)}

    before = explorers()
    monkeypatch.setattr(widget, "BrowserRequests", broken)
    with pytest.raises(RuntimeError, match="browser link"):
        widget.Explorer(pipe)
    assert explorers() == before  # closed: no widget left open in the kernel, no threads behind it
    gc.collect()  # and closing it again on its way out finds only the parts it has (no AttributeError)
