"""A decision curve drawn as a picture with PIL (no plotting library): one line per attribute over the steps
branched at, the share kept from 0 to 1, a legend, and a dashed mark where an attribute is decided."""
from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw, ImageFont

# Colours that read on a white and on a near-black page alike (mid lightness, distinct hues).
LINE_COLOURS = ("#e4572e", "#3d8fd1", "#3bb273", "#c58b00", "#9b5de5", "#6c757d")
THEMES = {"light": {"page": "#ffffff", "ink": "#222222", "grid": "#dddddd"},
          "dark": {"page": "#1e1e1e", "ink": "#e6e6e6", "grid": "#444444"}}
MARGIN = dict(left=44, right=12, top=12, bottom=34)


def plot_decision_curve(curve: Any, width: int = 520, height: int = 260, theme: str = "light",
                        mark: str | None = "color", level: float = 0.9) -> Image.Image:
    """The curve as an RGB picture. mark: the attribute whose decided step gets a dashed line and a label
    ("colour decided here"), None for none; an attribute the curve lacks is skipped (picture curves)."""
    if theme not in THEMES:
        raise ValueError(f"theme must be one of {', '.join(THEMES)}, got {theme!r}")
    for name, side in (("width", width), ("height", height)):
        if isinstance(side, bool) or not isinstance(side, int) or not 160 <= side <= 4096:
            raise ValueError(f"{name} must be an int from 160 to 4096, got {side!r}")
    colours = THEMES[theme]
    image = Image.new("RGB", (width, height), colours["page"])
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    x0, y0 = MARGIN["left"], MARGIN["top"]
    x1, y1 = width - MARGIN["right"], height - MARGIN["bottom"]
    last = max(curve.trajectory.params["steps"] - 1, 1)

    def at(step: float, share: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * step / last, y1 - (y1 - y0) * share

    for share in (0.0, 0.5, 1.0):
        draw.line([at(0, share), at(last, share)], fill=colours["grid"])
        draw.text((4, at(0, share)[1] - 6), f"{share:.1f}", fill=colours["ink"], font=font)
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=colours["ink"])
    for step in sorted({0, last // 2, last}):
        draw.text((at(step, 0)[0] - 6, y1 + 4), str(step), fill=colours["ink"], font=font)
    draw.text((x1 - 60, y1 + 18), "step k", fill=colours["ink"], font=font)
    for i, values in enumerate(curve.keep.values()):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        points = [at(k, v) for k, v in zip(curve.steps, values)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    draw.rectangle([x1 - 88, y0 + 2, x1 - 2, y0 + 6 + 13 * len(curve.keep)], fill=colours["page"],
                   outline=colours["grid"])
    for i, name in enumerate(curve.keep):
        legend_y = y0 + 4 + 13 * i
        draw.line([(x1 - 84, legend_y + 6), (x1 - 70, legend_y + 6)], fill=LINE_COLOURS[i % len(LINE_COLOURS)], width=2)
        draw.text((x1 - 66, legend_y), name, fill=colours["ink"], font=font)
    if mark is not None and mark in curve.keep:
        decided = curve.decided(mark, level)
        if decided is not None:
            x = at(decided, 0)[0]
            for y in range(int(y0), int(y1), 8):
                draw.line([(x, y), (x, min(y + 4, y1))], fill=colours["ink"])
            label = f"{'colour' if mark == 'color' else mark} decided here"
            draw.text((min(x + 4, x1 - 6 * len(label)), y1 - 14), label, fill=colours["ink"], font=font)
    return image
