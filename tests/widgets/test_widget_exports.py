"""Exports from the Explorer (Python and the page's buttons) and the MP4 writer in core.video."""
from __future__ import annotations

import json
import pathlib
import sys

import pytest
from PIL import Image

from nbdiffuse.core.video import VideoUnavailable, mp4_available, write_mp4


def _done(ex, **params):
    ex.generate(**params)
    assert ex.wait(120)
    return ex.trajectory


def test_export_from_python_into_export_dir(explorer, tmp_path):
    ex, fe = explorer
    traj = _done(ex, prompt="a <script>alert(1)</script> square", steps=6, seed=4)
    ex.export_dir = str(tmp_path / "exports")
    png = ex.export("png", k=2)
    assert png.parent == tmp_path / "exports" and png.name.endswith("_step3_x0.png")
    text = Image.open(png).text
    assert "Seed: 4" in text["parameters"] and json.loads(text["nbdiffuse"])["step"] == 2
    gif = ex.export("gif", start=1, stop=5, view="xt")
    assert Image.open(gif).n_frames == 4
    page = ex.export("html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    nbd_file = ex.export("nbd")
    import nbdiffuse as nbd

    assert len(nbd.Trajectory.load(nbd_file)) == 6
    again = ex.export("png", k=2)
    assert again != png and again.exists(), "an export never overwrites an earlier one"
    assert fe.state["export_files"][0] == str(again) and str(nbd_file) in fe.state["export_files"]
    explicit = ex.export("png", tmp_path / "mine.png", run=0)
    assert explicit == tmp_path / "mine.png" and explicit.exists()
    with pytest.raises(TypeError, match="k must be a step index"):
        ex.export("png", k="2")
    for bad, match in [(dict(kind="jpeg"), "kind must be one of"), (dict(kind="gif", start=4, stop=2), "start/stop"),
                       (dict(kind="png", view="side"), "view"), (dict(kind="gif", fps=0), "fps")]:
        with pytest.raises(ValueError, match=match):
            ex.export(**bad)
    (tmp_path / "afile").write_text("x")
    ex.export_dir = str(tmp_path / "afile")
    with pytest.raises(ValueError, match="export_dir must be a folder"):
        ex.export("png")
    assert traj is ex.trajectory


def test_a_png_is_named_after_the_step_it_shows(explorer, tmp_path):
    ex, fe = explorer
    first = _done(ex, steps=4, seed=1)
    _done(ex, steps=6, seed=2)
    ex.export_dir = str(tmp_path)
    fe.set(frame=1)  # the shown run's scrubber at its second step
    assert ex.export("png").name.endswith("_step2_x0.png")
    other = ex.export("png", run=first.id)  # another run: its last step, whatever the scrubber shows
    assert other.name == "a-lighthouse-on-a-cliff-at-dusk_run1_step4_x0.png"  # the prompt's words, run #1
    assert json.loads(Image.open(other).text["nbdiffuse"])["step"] == 3
    assert ex.export("png", k=-2).name.endswith("_run2_step5_x0.png")


def test_export_names_are_readable_and_never_reused(explorer, tmp_path):
    from nbdiffuse.widgets.export_files import slug

    ex, fe = explorer
    _done(ex, prompt="A big RED circle, on the left!", steps=5)
    ex.export_dir = str(tmp_path)
    assert ex.export("gif").name == "a-big-red-circle-on-the-left_run1_x0.gif"  # the whole run
    assert ex.export("gif").name == "a-big-red-circle-on-the-left_run1_x0_2.gif"
    assert ex.export("gif", start=1, stop=4, view="xt").name == "a-big-red-circle-on-the-left_run1_steps2-4_xt.gif"
    assert ex.export("html").name == "a-big-red-circle-on-the-left_run1.html"
    assert ex.export("nbd").name == "a-big-red-circle-on-the-left_run1.nbd"
    assert slug("") == "run" and slug("<script>") == "script" and slug("ünïcode wörds") == "ünïcode-wörds"
    assert slug("word " * 30) == "-".join(["word"] * 8)  # at most 40 characters, cut at a word


def test_export_buttons_write_files_and_show_their_names(explorer, tmp_path, wait_for):
    ex, fe = explorer
    _done(ex, steps=5)
    fe.set(export_dir=str(tmp_path))
    for kind in ("png", "gif", "html", "nbd"):
        fe.send({"type": "export", "kind": kind, "k": 1, "view": "x0", "start": 0, "stop": 5})
    wait_for(lambda: len(fe.state.get("export_files", [])) == 4, what="four exports")
    names = sorted(pathlib.Path(f).suffix for f in fe.state["export_files"])
    assert names == [".gif", ".html", ".nbd", ".png"] and all(pathlib.Path(f).exists() for f in fe.state["export_files"])
    fe.send({"type": "export", "kind": "gif", "start": 3, "stop": 1})
    wait_for(lambda: "start/stop" in ex.error, what="the export error in the widget")
    assert ex.status == "done"



def test_the_page_downloads_exported_files_and_nothing_else(explorer, tmp_path, wait_for):
    ex, fe = explorer
    _done(ex, steps=3)
    fe.set(export_dir=str(tmp_path))
    fe.send({"type": "export", "kind": "png", "k": 2, "view": "x0"})
    path = wait_for(lambda: (fe.state.get("export_files") or [None])[0], what="the export")
    fe.send({"type": "download", "path": path, "req": "r1"})
    reply = wait_for(lambda: [c for c in fe.customs if c[0].get("type") == "download"], what="the file's bytes")
    content, buffers = reply[-1]
    assert content["req"] == "r1" and content["name"] == pathlib.Path(path).name
    assert buffers[0] == pathlib.Path(path).read_bytes()
    secret = tmp_path / "secret.txt"
    secret.write_text("not an export")
    fe.send({"type": "download", "path": str(secret), "req": "r2"})  # a path the Explorer did not write
    wait_for(lambda: "not one of the files this Explorer exported" in ex.error, what="the refusal")
    pathlib.Path(path).unlink()
    fe.send({"type": "download", "path": path, "req": "r3"})
    wait_for(lambda: "no longer there" in ex.error, what="the missing file said")
    assert [c["req"] for c, _ in fe.customs if c.get("type") == "download"] == ["r1"]


def test_mp4_export(explorer, tmp_path, monkeypatch):
    ex, fe = explorer
    traj = _done(ex, steps=4)
    if mp4_available():
        path = write_mp4(traj, tmp_path / "run.mp4", size=64, start=1)
        assert path.stat().st_size > 0 and path.read_bytes()[4:8] == b"ftyp"
        assert ex.export("mp4", tmp_path / "w.mp4").exists() and fe.state["mp4"] is True
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if it were not installed
    with pytest.raises(VideoUnavailable, match="pip install imageio-ffmpeg"):
        write_mp4(traj, tmp_path / "none.mp4")
    with pytest.raises(ValueError, match="fps"):
        write_mp4(traj, tmp_path / "none.mp4", fps=0)
    assert not (tmp_path / "none.mp4").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_exported_files_get_the_mode_a_users_file_gets(explorer, tmp_path, umask):
    """Like a file made with open(): 0666 less the umask (the .nbd file was written 0600 whatever the umask)."""
    import os

    ex, fe = explorer
    _done(ex, steps=3)
    ex.export_dir = str(tmp_path)
    old = os.umask(umask)
    try:
        kinds = ("png", "gif", "html", "nbd") + (("mp4",) if mp4_available() else ())
        written = {kind: ex.export(kind) for kind in kinds}
    finally:
        os.umask(old)
    assert {kind: path.stat().st_mode & 0o777 for kind, path in written.items()} == \
        {kind: 0o666 & ~umask for kind in kinds}
