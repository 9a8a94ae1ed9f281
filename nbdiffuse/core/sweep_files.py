"""A sweep on disk (one `.nbd` file per cell and `index.json`) and as one labelled PNG grid.

index.json: {"format": "nbdiffuse.sweep", "format_version": 1, "source", "fixed",
"axes": [{"name", "labels"}], "cells": [{"index", "labels", "call", "file", "error"}]}. A cell's file
is a plain name inside the folder (a name that climbs out of it is refused at load), or null
for a cell that failed before its first step.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .sweep_plan import Axis, Cell

FORMAT = "nbdiffuse.sweep"
FORMAT_VERSION = 1
INDEX = "index.json"


def cell_name(index: tuple[int, ...]) -> str:
    return "cell-" + "-".join(f"{i:03d}" for i in index) + ".nbd"


def save_sweep(sweep: Any, folder: Any, frames: bool = True) -> Path:
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a folder path, got {type(folder).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder={str(folder)!r} is a file; give a folder (made if missing)")
    folder.mkdir(parents=True, exist_ok=True)
    cells = []
    for cell in sweep.cells:
        name = None
        if cell.run is not None:
            name = cell_name(cell.index)
            cell.run.save(folder / name, frames=frames)
        cells.append({"index": list(cell.index), "labels": cell.labels, "call": _plain(cell.call), "file": name,
                      "error": cell.error})
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": sweep.source, "fixed": sweep.fixed,
             "axes": [{"name": a.name, "labels": list(a.labels)} for a in sweep.axes], "cells": cells}
    path = folder / INDEX
    path.write_text(json.dumps(index, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def load_sweep(cls: type, folder: Any, pipe: Any = None) -> Any:
    from .trajectory import Trajectory

    folder = Path(folder)
    path = folder / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"folder {str(folder)!r} holds no {INDEX}: not a sweep saved by Sweep.save")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT:
            raise ValueError(f"its format is {index.get('format')!r}, not {FORMAT!r}")
        if int(index.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"it was written by a newer nbdiffuse (format version {index['format_version']})")
        axes = [Axis(a["name"], tuple(str(x) for x in a["labels"]), tuple({} for _ in a["labels"])) for a in index["axes"]]
        cells = []
        for record in index["cells"]:
            name = record.get("file")
            if name is not None and (Path(name).name != name or not name.endswith(".nbd")):
                raise ValueError(f"cell file {name!r} is not a plain .nbd name inside the folder")
            run = Trajectory.load(folder / name, pipe=pipe) if name is not None else None
            cells.append(Cell(tuple(int(i) for i in record["index"]), dict(record["labels"]), dict(record["call"]),
                              run=run, error=record.get("error")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"folder {str(folder)!r}: {INDEX} is not a readable sweep index ({type(exc).__name__}: {exc})") from exc
    expected = 1
    for axis in axes:
        expected *= len(axis.labels)
    if expected != len(cells):
        raise ValueError(f"folder {str(folder)!r}: {INDEX} lists {len(cells)} cells for a grid of {expected}")
    return cls(axes, cells, dict(index.get("fixed") or {}), index.get("source"))


def _plain(call: dict) -> dict:
    """A cell's call as JSON keeps it (walk ends as lists; a picture by its type name)."""
    plain = (str, int, float, bool, type(None))
    out = {}
    for key, value in call.items():
        if key == "walk":
            out[key] = {k: list(v) for k, v in value.items()}
        elif isinstance(value, plain) or (isinstance(value, (list, tuple)) and all(isinstance(x, plain) for x in value)):
            out[key] = list(value) if isinstance(value, tuple) else value
        else:
            out[key] = f"<{type(value).__name__}>"
    return out


def grid_layout(sweep: Any) -> tuple[list[str], list[str]]:
    """(row labels, column labels): the last axis makes the columns, the others (joined) the rows."""
    axes = sweep.axes
    columns = [f"{axes[-1].name} {label}" if axes[-1].name not in ("prompt", "prompt_sr") else label
               for label in axes[-1].labels]
    n = len(axes[-1].labels)
    rows = []
    for r in range(len(sweep.cells) // n):
        labels = sweep.cells[r * n].labels
        rows.append(", ".join(f"{a.name} {labels[a.name]}" for a in axes[:-1]))
    return rows, columns


def grid_image(sweep: Any, k: int, view: str, decoder: str, cell_size: int) -> Image.Image:
    """Every cell's picture at step `k` (its own last step where it made fewer), labelled; a failed
    cell is grey with "failed"."""
    if isinstance(cell_size, bool) or not isinstance(cell_size, int) or not 16 <= cell_size <= 1024:
        raise ValueError(f"cell_size must be an int in 16..1024 (pixels), got {cell_size!r}")
    rows, columns = grid_layout(sweep)
    font = ImageFont.load_default()
    pad, top = 4, 20
    left = 8 + max([int(font.getlength(r)) for r in rows] + [0]) if any(rows) else pad
    width = left + len(columns) * (cell_size + pad)
    height = top + len(rows) * (cell_size + pad)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(columns):
        draw.text((left + j * (cell_size + pad), 4), _fit(label, font, cell_size), fill="black", font=font)
    for i, label in enumerate(rows):
        draw.text((4, top + i * (cell_size + pad) + cell_size // 2 - 6), label, fill="black", font=font)
    for n, cell in enumerate(sweep.cells):
        i, j = divmod(n, len(columns))
        x, y = left + j * (cell_size + pad), top + i * (cell_size + pad)
        if cell.run is None or len(cell.run) == 0:
            draw.rectangle([x, y, x + cell_size - 1, y + cell_size - 1], fill=(200, 200, 200))
            draw.text((x + 4, y + 4), "failed", fill="black", font=font)
            continue
        step = min(k if k >= 0 else len(cell.run) + k, len(cell.run) - 1)
        picture = cell.run.image(max(step, 0), view=view, decoder=decoder)
        canvas.paste(picture.convert("RGB").resize((cell_size, cell_size), Image.LANCZOS), (x, y))
    return canvas


def _fit(text: str, font: Any, width: int) -> str:
    while text and font.getlength(text) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text
