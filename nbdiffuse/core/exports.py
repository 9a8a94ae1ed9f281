"""Exports of a trajectory that need no nbdiffuse to view: PNG with parameters, GIF, HTML page."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from .overlay_maps import overlay_state
from .views import VIEWS
from .validate import MAX_PICTURE_SIDE, check_choice, check_int, check_number

# A GIF stores each frame's time in hundredths of a second in 16 bits (at most 655 s); a minute is
# already far longer than anyone holds a last frame.
MAX_HOLD_SECONDS = 60.0

# Sampler names as the Stable Diffusion web UIs write them in PNG "parameters".
_WEBUI_SAMPLERS = {"euler": "Euler", "euler_a": "Euler a", "heun": "Heun", "lms": "LMS", "ddim": "DDIM",
                   "ddpm": "DDPM", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras",
                   "euler_karras": "Euler Karras", "unipc": "UniPC", "deis": "DEIS"}


def _steps_range(traj, start: int | None, stop: int | None) -> range:
    n = len(traj)
    if n == 0:
        raise ValueError("this trajectory has no steps to export")
    start = 0 if start is None else start
    stop = n if stop is None else stop
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= n):
        raise ValueError(f"start/stop must satisfy 0 <= start < stop <= {n}; got start={start!r}, stop={stop!r}")
    return range(start, stop)


def parameters_text(traj, k: int = -1) -> str:
    """The web UIs' "parameters" text, so other tools read prompt, seed and settings back."""
    p = traj.params
    step = traj[k]
    lines = [p["prompt"]]
    if p.get("negative_prompt"):
        lines.append(f"Negative prompt: {p['negative_prompt']}")
    guidance = sorted(set(traj.guidances)) or [p["guidance"][0]]
    cfg = f"{guidance[0]:g}" if len(guidance) == 1 else "varied (" + ", ".join(f"{g:g}" for g in traj.guidances) + ")"
    fields = [f"Steps: {p['steps']}", f"Sampler: {_WEBUI_SAMPLERS.get(p['scheduler'], p['scheduler'])}",
              f"CFG scale: {cfg}", f"Seed: {p['seed']}", f"Size: {p['width']}x{p['height']}",
              f"Model: {p.get('model') or p['pipeline']}", f"Shown step: {step.index + 1}/{len(traj)}"]
    if p.get("parent"):
        fields.append(f"Branched from: {p['parent']} at step {p['branched_at'] + 1}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def write_png(traj, path: Any, k: int = -1, view: str = "x0", decoder: str | None = None, size: Any = "output") -> None:
    """A PNG of step k with the run's parameters as plain-text chunks ("parameters" and "nbdiffuse" JSON).

    decoder None: the truest picture at hand, for one frame worth a decode: the full VAE when the
    pipeline is attached, else the run's saved frame, else approx. The JSON says which was used.
    """
    decoder = decoder or ("full" if traj.pipe is not None else "auto")
    used = traj.decoder_used(k, view, decoder)
    picture = traj.image(k, view=view, decoder=decoder, size=size).convert("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters_text(traj, k))
    info.add_text("nbdiffuse", json.dumps({"params": traj.params, "step": traj[k].index, "view": view,
                                           "decoder": used}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG", pnginfo=info)


def write_gif(traj, path: Any, view: str = "x0", fps: float = 8, decoder: str = "auto", size: Any = 256,
              hold_last: float = 1.0, start: int | None = None, stop: int | None = None) -> None:
    """One frame per step of [start, stop); the last frame is held for `hold_last` seconds.
    decoder as Trajectory.image: "auto" shows saved frames, else the full VAE, else approx."""
    check_choice("view", view, VIEWS)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 50:
        raise ValueError(f"fps must be a number in (0, 50], got {fps!r}")
    hold_last = check_number("hold_last", hold_last, 0, MAX_HOLD_SECONDS, " seconds")
    steps = _steps_range(traj, start, stop)
    frames = [traj.image(k, view=view, decoder=decoder, size=size).convert("RGB") for k in steps]
    frame_ms = int(round(1000 / fps))
    durations = [frame_ms] * len(frames)
    durations[-1] = max(frame_ms, int(hold_last * 1000))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False)


def _data_uri(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _script_json(value: Any) -> str:
    """JSON safe inside <script>: no '</script>' or '<!--' can be formed from user text."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_html(traj, path: Any, decoder: str = "auto", size: int = 256) -> None:
    """A self-contained page (no server, no network): x0 and x_t frames, a scrubber, guidance, parameters,
    and an overlay picker (a word's attention map, the guidance map, an inpainting run's mask) over the x0 frame where
    the run has them.
    decoder as Trajectory.image: "auto" shows saved frames, else the full VAE, else approx. size: each
    picture's long side in pixels (the page shows both views side by side at that size)."""
    size = check_int("size", size, 1, MAX_PICTURE_SIDE)
    steps = _steps_range(traj, None, None)
    views = VIEWS if traj.has_x0 else ("xt",)  # a pipeline without a family gives x_t only
    frames = {view: [_data_uri(traj.image(k, view=view, decoder=decoder, size=size)) for k in steps]
              for view in views}
    data = {"frames": frames, "guidance": traj.guidances, "timesteps": [s.timestep for s in traj],
            "total": traj.total_steps, "overlay": _overlay_data(traj)}
    rows = "\n".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_show(value))}</td></tr>"
                     for key, value in traj.params.items() if key not in ("scheduler_config",))
    page = _PAGE.format(title=html.escape(traj.params["prompt"] or "(empty prompt)"), rows=rows,
                        data=_script_json(data), n=len(traj) - 1, size=int(size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


def _overlay_data(traj) -> dict:
    """The run's overlays (core/overlay_maps.py) for the page: per step, base64 bytes over the latent grid."""
    state = overlay_state(traj)

    def b64(chunks: list[bytes]) -> list[str]:
        return [base64.b64encode(chunk).decode("ascii") for chunk in chunks]
    return {"words": state["overlay_words"], "maps": b64(state["overlay_maps"]), "scale": state["overlay_scale"],
            "grid": state["overlay_grid"], "guidance": b64(state["guidance_maps"]),
            "guidance_scale": state["guidance_scale"], "mask": base64.b64encode(state["mask_map"]).decode("ascii"),
            "mask_grid": state["mask_grid"]}


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>nbdiffuse: {title}</title>
<style>
 body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }}
 @media (prefers-color-scheme: dark) {{ body {{ color: #ddd; background: #1e1e1e; }} th {{ color: #aaa; }} }}
 .views {{ display: flex; gap: 12px; flex-wrap: wrap; }}
 figure {{ margin: 0; text-align: center; }}
 img {{ width: {size}px; height: {size}px; image-rendering: pixelated; border: 1px solid #8884; }}
 .x0 {{ position: relative; }}
 #ov {{ position: absolute; left: 1px; top: 1px; width: {size}px; height: {size}px; pointer-events: none; }}
 #legend {{ display: inline-block; width: 96px; height: 10px; vertical-align: middle;
   background: linear-gradient(90deg, rgb(20,30,90), rgb(40,120,180), rgb(90,190,120), rgb(250,230,60)); }}
 input[type=range] {{ width: min(100%, {size}px * 2 + 12px); }}
 table {{ border-collapse: collapse; margin-top: 1em; }} th {{ text-align: left; padding-right: 1em; color: #555; vertical-align: top; }}
 td {{ font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; }}
</style></head><body>
<h1 id="prompt">{title}</h1>
<div class="views">
 <figure class="x0"><img id="x0" alt="predicted clean image x0"><canvas id="ov" hidden></canvas>
  <figcaption>predicted clean image x0</figcaption></figure>
 <figure><img id="xt" alt="noisy latent x_t"><figcaption>noisy latent x_t</figcaption></figure>
</div>
<p><input id="scrub" type="range" min="0" max="{n}" value="{n}" aria-label="step">
 <span id="label"></span></p>
<p id="overlays" hidden><label>overlay <select id="overlay" aria-label="overlay"><option value="">none</option></select></label>
 <span id="legend"></span> <span id="legend-text"></span></p>
<table>{rows}</table>
<script id="data" type="application/json">{data}</script>
<script>
 const data = JSON.parse(document.getElementById("data").textContent);
 const scrub = document.getElementById("scrub"), label = document.getElementById("label");
 function show() {{
   const k = Number(scrub.value);
   if (data.frames.x0) document.getElementById("x0").src = data.frames.x0[k];
   else document.getElementById("x0").parentElement.hidden = true;
   document.getElementById("xt").src = data.frames.xt[k];
   label.textContent = "step " + (k + 1) + " / " + data.total + ", guidance " + data.guidance[k];
 }}
 const ov = data.overlay, select = document.getElementById("overlay"), canvas = document.getElementById("ov");
 const RAMP = [[20, 30, 90], [40, 120, 180], [90, 190, 120], [250, 230, 60]];
 function colour(v) {{
   const x = v * (RAMP.length - 1), i = Math.min(Math.floor(x), RAMP.length - 2), f = x - i;
   return RAMP[i].map((c, j) => Math.round(c + f * (RAMP[i + 1][j] - c)));
 }}
 if (ov.guidance.length) select.add(new Option("guidance", "g"));
 if (ov.mask) select.add(new Option("mask", "m"));
 ov.words.forEach((word, i) => select.add(new Option(word, String(i))));
 document.getElementById("overlays").hidden = select.options.length < 2;
 function paintOverlay(k) {{
   const what = select.value, [gh, gw] = ov.grid;
   canvas.hidden = what === "";
   document.getElementById("legend").hidden = what === "m";  // a mask has no scale
   if (what === "") {{ document.getElementById("legend-text").textContent = ""; return; }}
   if (what === "m") {{ paintMask(); return; }}
   const bytes = Uint8Array.from(atob(what === "g" ? ov.guidance[k] : ov.maps[k]), (c) => c.charCodeAt(0));
   const offset = what === "g" ? 0 : Number(what) * gh * gw;
   canvas.width = gw; canvas.height = gh;
   const ctx = canvas.getContext("2d"), image = ctx.createImageData(gw, gh);
   for (let i = 0; i < gh * gw; i++) {{
     const v = bytes[offset + i] / 255;
     image.data.set([...colour(v), Math.round(255 * (0.08 + 0.62 * v))], 4 * i);
   }}
   ctx.putImageData(image, 0, 0);
   const top = what === "g" ? ov.guidance_scale : ov.scale[Number(what)];
   document.getElementById("legend-text").textContent =
     (what === "g" ? "guidance" : "attention to \u201c" + ov.words[Number(what)] + "\u201d") + ": 0 \u2013 " + top.toPrecision(3);
 }}
 function paintMask() {{  // an inpainting run's mask, the same at every step: the part repainted, tinted
   const [mh, mw] = ov.mask_grid, bytes = Uint8Array.from(atob(ov.mask), (c) => c.charCodeAt(0));
   canvas.width = mw; canvas.height = mh;
   const ctx = canvas.getContext("2d"), image = ctx.createImageData(mw, mh);
   for (let i = 0; i < mh * mw; i++) image.data.set(bytes[i] ? [236, 64, 122, 120] : [0, 0, 0, 0], 4 * i);
   ctx.putImageData(image, 0, 0);
   document.getElementById("legend-text").textContent = "mask: the part the model repaints";
 }}
 scrub.addEventListener("input", () => {{ show(); paintOverlay(Number(scrub.value)); }});
 select.addEventListener("change", () => paintOverlay(Number(scrub.value)));
 show();
</script></body></html>
"""
