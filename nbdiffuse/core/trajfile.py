"""Trajectory files (.nbd): safetensors tensors + JSON metadata with a format version.

Nothing here unpickles or runs code: safetensors holds raw tensors and the metadata is JSON.
Version 2 adds the run's pictures (core/saved_frames.py): uint8 tensors of image bytes, named
frames.<step>.<view>, and meta "frames". Version 3 adds the tensor "output": what pipe(...) returned where
it is not the last step's latents in any shape (Trajectory.output; a watched run, core/generic.py), and
params "output_shape"; a file holds them only then, and is written as version 3 only then (version 2
readers open the others). Version 1 files (no pictures) and version 2 files still load. Version 4: x0 without
the (cond, uncond) pair, PAG runs; 5: an inpainting run's mask (tensor "mask"); 6: an image-to-image or
inpainting run's start picture (tensor "start_picture", uint8 H x W x 3, its fingerprint params.image).
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save

from .decode import ApproxDecoder
from .nbd_control import control_tensor
from .nbd_schema import TrajectoryFileError, check_file
from .save_target import check_save_path
from .saved_frames import frames_to_save, pack, unpack, views_saved
from .step import Step

if TYPE_CHECKING:  # Trajectory.save and .load call this module: it builds the class it is given
    from .trajectory import Trajectory

FORMAT = "nbdiffuse.trajectory"
FORMAT_VERSION = 6
_STEP_TENSORS = ("latents", "pred_x0", "eps_cond", "eps_uncond", "eps_perturbed", "attention")
_STEP_FIELDS = ("index", "timestep", "sigma", "guidance", "x0_coeff", "xt_scale", "seconds")
_OPTIONAL_FIELDS = ("control_scale", "control_strength", "pag_scale")  # ControlNet and PAG runs; absent from older files


def save_trajectory(traj: Trajectory, path: Any, frames: bool = True) -> None:
    """Write `traj` to `path`; frames=True also stores each step's pictures as its model's VAE draws
    them (saved_frames.frames_to_save: decoded with the attached pipeline, or the ones a loaded run
    carries), so the run shows them when opened without its model."""
    if not isinstance(frames, bool):
        raise TypeError(f"frames must be True or False, got {frames!r}")
    path = check_save_path(path)  # core/save_target.py: a folder (or any path that takes no file) makes no .tmp
    tensors = {"initial_latents": traj.initial_latents.contiguous().clone()}
    steps = []
    for step in traj.steps:
        record = {name: getattr(step, name) for name in _STEP_FIELDS}
        record.update({name: getattr(step, name) for name in _OPTIONAL_FIELDS if getattr(step, name) is not None})
        record["extra_outputs"] = len(step.extra_outputs)
        steps.append(record)
        for name in _STEP_TENSORS:
            value = getattr(step, name)
            if value is not None:
                tensors[f"steps.{step.index}.{name}"] = value.contiguous().clone()
        for j, extra in enumerate(step.extra_outputs):
            tensors[f"steps.{step.index}.extra.{j}"] = extra.contiguous().clone()
    if traj.output is not None:  # what pipe(...) returned, of another shape than its last step's latents
        tensors["output"] = traj.output.contiguous().clone()
    if traj.mask is not None:  # an inpainting run's mask (white repaints), as the user gave or painted it
        tensors["mask"] = torch.from_numpy(np.array(traj.mask.convert("L"), dtype=np.uint8))
    if traj.start_picture is not None:  # an image-to-image or inpainting run's start picture, as the run took it
        tensors["start_picture"] = torch.from_numpy(np.array(traj.start_picture.convert("RGB"), dtype=np.uint8))
    if traj.control_image is not None:  # a ControlNet run's picture(s): a branch of the loaded run needs them
        pictures = traj.control_image if isinstance(traj.control_image, list) else [traj.control_image]
        for j, picture in enumerate(pictures):  # several ControlNets: control_image, control_image.1, ...
            tensors[control_tensor(j)] = torch.from_numpy(np.array(picture.convert("RGB"), dtype=np.uint8))
    approx = traj.approx
    if approx is None and traj.pipe is not None and traj.capabilities["previews"]:  # none for latents without a picture form
        approx = traj.approx_decoder()
    meta = {
        "params": traj.params,
        "steps": steps,
        "stopped": traj.stopped,
        "error": traj.error,
        "branched_at": traj.branched_at,
        "approx": approx.to_dict() if approx is not None else None,
        "frames": None,
    }
    if frames:
        frame_tensors, meta["frames"] = pack(frames_to_save(traj))
        tensors.update(frame_tensors)
    data = save(tensors, metadata={"format": FORMAT, "format_version": str(oldest_reader(traj)), "meta": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # open(), not safetensors' save_file, which creates files readable by their owner alone (0600):
    # a new file gets the mode any file the user makes gets (0666 less the umask), and a file written
    # over keeps its own, as open() would leave it.
    tmp.unlink(missing_ok=True)  # a leftover of a failed save would lend the new file its mode
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        tmp.replace(path)  # never leave a half-written file under the user's name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_trajectory(path: Any, cls: "type[Trajectory]") -> Trajectory:
    """Read the run a .nbd file holds as a `cls` (Trajectory.load passes its own class)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r}: no such trajectory file")
    if path.stat().st_size == 0:
        raise TrajectoryFileError(f"path {str(path)!r} is empty, not an nbdiffuse trajectory")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise TrajectoryFileError(f"path {str(path)!r} is not an nbdiffuse trajectory (not a safetensors file: "
                                  f"{type(exc).__name__}: {exc})") from exc
    if header.get("format") != FORMAT:
        raise TrajectoryFileError(f"path {str(path)!r} is a safetensors file but not an nbdiffuse trajectory")
    try:
        version = int(header.get("format_version", ""))
    except ValueError:
        raise TrajectoryFileError(f"path {str(path)!r} has a corrupt format version {header.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise TrajectoryFileError(f"path {str(path)!r} was written by a newer nbdiffuse (format version {version}; "
                                  f"this one reads up to {FORMAT_VERSION}): upgrade nbdiffuse to open it")
    check_file(header, tensors, path)  # core/nbd_schema.py: every field and tensor, before anything is built
    try:
        meta = json.loads(header["meta"])
        # Runs of pipelines watched through their step callback (core/generic.py) have no (cond, uncond) pair,
        # and x0 only where their sampler's prediction could be read.
        optional = ("eps_uncond", "eps_perturbed", "attention")
        if meta["params"].get("family") == "generic":
            optional += ("eps_cond",)
        if (meta["params"].get("capabilities") or {}).get("x0") is False:
            optional += ("pred_x0", "eps_cond")
        steps = [_step(record, tensors, optional) for record in meta["steps"]]
        traj = cls(params=meta["params"], initial_latents=tensors["initial_latents"], steps=steps,
                          stopped=bool(meta["stopped"]), error=meta.get("error"), branched_at=meta.get("branched_at"),
                          approx=ApproxDecoder.from_dict(meta["approx"]) if meta.get("approx") else None)
        traj.output = tensors.get("output")
        if "mask" in tensors:
            traj.mask = Image.fromarray(tensors["mask"].numpy())
        if "start_picture" in tensors:
            traj.start_picture = Image.fromarray(tensors["start_picture"].numpy())
        if "control_image" in tensors:
            nets = int((meta["params"].get("control") or {}).get("nets") or 0)
            pictures = [Image.fromarray(tensors[control_tensor(j)].numpy()) for j in range(max(nets, 1))]
            traj.control_image = pictures if nets else pictures[0]
        size = (int(traj.params["width"]), int(traj.params["height"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TrajectoryFileError(f"path {str(path)!r} is a corrupt nbdiffuse trajectory "
                                  f"({type(exc).__name__}: {exc})") from exc
    try:
        traj.saved_frames = unpack(tensors, meta.get("frames"), len(steps), size, views_saved(traj))
    except ValueError as exc:
        raise TrajectoryFileError(f"path {str(path)!r} has a broken saved frame: {exc}") from None
    return traj


def oldest_reader(traj: "Trajectory") -> int:
    """The oldest format version that reads the run as it is (older nbdiffuse refuses newer files by name, where
    it would misread these or call them corrupt): 4 for x0 without the (cond, uncond) pair (a pipeline that runs
    its own loop, core/sampler_tap.py) and for a PAG run (its perturbed predictions, the pag_scale each step
    asked), 3 for a run that records what its pipeline returned, else 2; 5 for an inpainting run that keeps its
    mask; 6 for a run that keeps its start picture (image to image, inpainting)."""
    p = traj.params
    if traj.start_picture is not None:
        return 6
    if traj.mask is not None:
        return 5
    if (p.get("family") == "generic" and traj.has_x0) or p.get("pag") is not None:
        return 4
    return 3 if traj.output is not None or p.get("output_shape") is not None else 2


def _step(record: dict, tensors: dict[str, torch.Tensor], optional: tuple[str, ...]) -> Step:
    """A step from its record and tensors; the tensors named in `optional` may be missing (None)."""
    k = int(record["index"])
    values = {name: record[name] for name in _STEP_FIELDS}
    values.update({name: record[name] for name in _OPTIONAL_FIELDS if record.get(name) is not None})
    for name in _STEP_TENSORS:
        key = f"steps.{k}.{name}"
        if key not in tensors and name not in optional:
            raise KeyError(key)
        values[name] = tensors.get(key)
    values["extra_outputs"] = tuple(tensors[f"steps.{k}.extra.{j}"] for j in range(int(record["extra_outputs"])))
    return Step(**values)
