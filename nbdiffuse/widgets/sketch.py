"""A sketch pad (ipycanvas) to draw the start picture of an image-to-image run.

    pad = nbd.SketchPad()                   # draw with the mouse (or a finger)
    pad                                     # show it
    ex.generate(image=pad, strength=0.7)    # the drawing, noised to 70 %, denoised by the model

Every stroke is drawn twice: on the canvas in the browser, and on a Pillow picture in the
kernel, so `pad.image` never waits for the browser and works in a notebook run headless.
"""
from __future__ import annotations

from typing import Any, Sequence

import ipywidgets as w
from ipycanvas import Canvas, hold_canvas
from PIL import Image, ImageColor, ImageDraw

from ..core.img2img import check_image

# The shapes world's colours, then grey: what the embedded model knows how to draw.
PALETTE = {"red": "#e53935", "orange": "#fb8c00", "yellow": "#fdd835", "green": "#43a047", "blue": "#1e88e5",
           "purple": "#8e24aa", "white": "#ffffff", "black": "#000000", "gray": "#9e9e9e", "sky": "#9fd3f5"}
UNDO_DEPTH = 20


class SketchPad(w.VBox):
    """`nbd.SketchPad(width=256, height=256, background="white", image=None)`: draw a start picture.

    Pick a colour and a brush size, draw with the mouse; "Fill" paints the whole pad (a
    background), "Undo" takes back the last stroke (up to 20), "Clear" starts over. `pad.image`
    is the drawing as a PIL image; `pad.load(picture)` starts from a picture instead.
    """

    def __init__(self, width: int = 256, height: int = 256, background: str = "white", image: Any = None,
                 colors: Sequence[str] = tuple(PALETTE)):
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 2048:
                raise ValueError(f"{name} must be an int in 16..2048 (pixels), got {value!r}")
        self._colors = {name: _color(name) for name in colors}
        if not self._colors:
            raise ValueError("colors must name at least one colour")
        self.size = (width, height)
        self._picture = Image.new("RGB", self.size, _color(background))
        self._undo: list[Image.Image] = []
        self._last: tuple[float, float] | None = None
        self.canvas = Canvas(width=width, height=height, layout=w.Layout(border="1px solid #bdbdbd", width=f"{width}px",
                                                                          height=f"{height}px"))
        self.canvas.line_cap = "round"
        self.canvas.line_join = "round"
        self.color = w.Dropdown(options=list(self._colors), value=next(iter(self._colors)), description="Colour",
                                layout=w.Layout(width="180px"))
        self.brush = w.IntSlider(value=max(2, width // 16), min=1, max=max(2, width // 4), description="Brush",
                                 layout=w.Layout(width="260px"))
        fill = w.Button(description="Fill", tooltip="paint the whole pad with the colour (a background)")
        undo = w.Button(description="Undo", tooltip="take back the last stroke")
        clear = w.Button(description="Clear", tooltip="start over (the background colour)")
        fill.on_click(lambda _: self.fill(self.color.value))
        undo.on_click(lambda _: self.undo())
        clear.on_click(lambda _: self.clear(background))
        self.canvas.on_mouse_down(self._down)
        self.canvas.on_mouse_move(self._move)
        self.canvas.on_mouse_up(self._up)
        self.canvas.on_mouse_out(self._up)
        super().__init__([w.HBox([self.color, self.brush]), w.HBox([fill, undo, clear]), self.canvas])
        self._paint()
        if image is not None:
            self.load(image)

    # --- what the Explorer reads -------------------------------------------------------
    @property
    def image(self) -> Image.Image:
        """The drawing so far (a copy)."""
        return self._picture.copy()

    # --- drawing, from Python or the mouse ---------------------------------------------
    def load(self, image: Any) -> None:
        """Start from a picture (PIL image, uint8 array or file path), resized to the pad."""
        picture = check_image(image).resize(self.size, Image.LANCZOS)
        self._remember()
        self._picture = picture
        self._paint()

    def fill(self, color: str) -> None:
        self._remember()
        self._picture = Image.new("RGB", self.size, self._rgb(color))
        self._paint()

    def clear(self, background: str = "white") -> None:
        self.fill(background)

    def stroke(self, points: Sequence[tuple[float, float]], color: str | None = None, size: int | None = None) -> None:
        """Draw a stroke through `points` (pixels), as a mouse drag would."""
        points = [(float(x), float(y)) for x, y in points]
        if not points:
            return
        self._remember()
        for a, b in zip(points, points[1:] or points):
            self._segment(a, b, color, size)

    def undo(self) -> None:
        if self._undo:
            self._picture = self._undo.pop()
            self._paint()

    # --- internals ---------------------------------------------------------------------
    def _rgb(self, color: str | None) -> tuple[int, int, int]:
        color = self.color.value if color is None else color
        return self._colors[color] if color in self._colors else _color(color)

    def _remember(self) -> None:
        self._undo.append(self._picture.copy())
        del self._undo[:-UNDO_DEPTH]

    def _segment(self, a: tuple[float, float], b: tuple[float, float], color: str | None, size: int | None) -> None:
        rgb = self._rgb(color)
        width = int(size or self.brush.value)
        draw = ImageDraw.Draw(self._picture)
        draw.line([a, b], fill=rgb, width=width)
        r = width / 2
        for x, y in (a, b):  # round caps, as the canvas draws them
            draw.ellipse((x - r, y - r, x + r, y + r), fill=rgb)
        with hold_canvas():
            self.canvas.stroke_style = self._stroke_style(rgb)
            self.canvas.line_width = width
            self.canvas.stroke_line(a[0], a[1], b[0], b[1])

    def _stroke_style(self, rgb: tuple[int, int, int]) -> str:
        """How the canvas draws a stroke of colour `rgb` while the mouse moves (the colour itself)."""
        return "#%02x%02x%02x" % rgb

    def _paint(self) -> None:
        """Show the Pillow picture on the canvas (after load, fill, undo)."""
        import numpy as np

        self.canvas.put_image_data(np.asarray(self._picture), 0, 0)

    def _down(self, x: float, y: float) -> None:
        self._remember()
        self._last = (x, y)
        self._segment((x, y), (x, y), None, None)

    def _move(self, x: float, y: float) -> None:
        if self._last is not None:
            self._segment(self._last, (x, y), None, None)
            self._last = (x, y)

    def _up(self, x: float, y: float) -> None:
        self._last = None


def _color(name: str) -> tuple[int, int, int]:
    if name in PALETTE:
        name = PALETTE[name]
    try:
        return ImageColor.getrgb(name)[:3]
    except (ValueError, AttributeError):
        raise ValueError(f"colour {name!r} is not a colour name or #rrggbb; try one of {', '.join(PALETTE)}") from None
