"""The HTML export carries a run's overlays: the words' attention maps and the guidance maps, per step."""
import base64
import json
import re

import nbdiffuse as nbd
from nbdiffuse.core.overlay_maps import overlay_state


def page_data(path):
    page = path.read_text()
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    return page, json.loads(found.group(1))


def test_the_page_carries_each_steps_maps(sd_pipe, tmp_path):
    traj = nbd.trace(sd_pipe, "a red circle", steps=3, guidance=4.0, seed=1, attention=True)
    traj.to_html(tmp_path / "run.html")
    page, data = page_data(tmp_path / "run.html")
    state = overlay_state(traj)
    assert data["overlay"]["words"] == traj.tokens and data["overlay"]["grid"] == state["overlay_grid"]
    assert [base64.b64decode(m) for m in data["overlay"]["maps"]] == state["overlay_maps"]
    assert [base64.b64decode(m) for m in data["overlay"]["guidance"]] == state["guidance_maps"]
    assert 'id="overlay"' in page and 'id="ov"' in page


def test_words_stay_text_in_the_page(sd_pipe, tmp_path):
    evil = "red </script><script>alert(1)</script>"
    traj = nbd.trace(sd_pipe, evil, steps=2, guidance=4.0, seed=0, attention=True)
    traj.to_html(tmp_path / "run.html")
    page, data = page_data(tmp_path / "run.html")
    assert "<script>alert" not in page and any("script" in w for w in data["overlay"]["words"])


def test_a_run_without_maps_has_only_the_guidance_overlay(sd_pipe, tmp_path):
    traj = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=4.0, seed=0)
    traj.to_html(tmp_path / "run.html")
    _, data = page_data(tmp_path / "run.html")
    assert data["overlay"]["words"] == [] and len(data["overlay"]["guidance"]) == 2


def test_an_inpainting_runs_page_carries_its_mask(sd_pipe, tmp_path):
    """The mask of an inpainting run, as the Explorer's mask chip shows it; a run without one has none."""
    import numpy as np
    from PIL import Image

    pipe = nbd.load_pipeline(sd_pipe, inpaint=True)
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (16, 0, 32, 32))
    traj = nbd.trace(pipe, "a red circle", steps=2, guidance=4.0, seed=0, image=Image.new("RGB", (32, 32), "white"),
                     mask_image=mask, height=32, width=32)
    traj.to_html(tmp_path / "run.html")
    page, data = page_data(tmp_path / "run.html")
    shown = np.frombuffer(base64.b64decode(data["overlay"]["mask"]), np.uint8).reshape(data["overlay"]["mask_grid"])
    assert (shown[:, 16:] == 255).all() and not shown[:, :16].any() and 'new Option("mask", "m")' in page
    plain = nbd.trace(sd_pipe, "a red circle", steps=2, guidance=4.0, seed=0)
    plain.to_html(tmp_path / "plain.html")
    assert page_data(tmp_path / "plain.html")[1]["overlay"]["mask"] == ""
