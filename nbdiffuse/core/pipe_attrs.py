"""What nbdiffuse hangs on diffusers objects, in one place: named getters and setters for every
`_nbd_*` attribute, so no other module spells one.

On a pipeline: where it was loaded from (`_nbd_source`), whether it speaks the shapes grammar
(`_nbd_shapes`), its tiny decoder (`_nbd_tiny_vae`) and the LoRA nbdiffuse loaded into it
(`_nbd_lora`). On a VAE: the approx-decoder fit its model folder ships (`_nbd_approx`).
They live on the objects themselves so that they follow the pipeline wherever it is passed and
go away with it.
"""
from __future__ import annotations

from typing import Any


def source(pipe: Any) -> str | None:
    """Where load_pipeline() loaded `pipe` from ("nbdiffuse/shapes", a folder or a hub id), or None."""
    return getattr(pipe, "_nbd_source", None)


def set_source(pipe: Any, where: str) -> None:
    pipe._nbd_source = where


def model_name(pipe: Any, fallback: str = "") -> str:
    """The model's display name: where it was loaded from, else diffusers' _name_or_path, else `fallback`."""
    return str(source(pipe) or pipe.config.get("_name_or_path") or fallback)


def copy_attrs(source_pipe: Any, target: Any) -> None:
    """Everything nbdiffuse hung on `source_pipe`, on `target` too (a pipeline made from it: from_pipe)."""
    for name, value in vars(source_pipe).items():
        if name.startswith("_nbd_"):
            setattr(target, name, value)


def speaks_shapes(pipe: Any) -> bool:
    """Whether `pipe` is a model of the shapes world (the embedded one, or one trained by nbdiffuse.shapes.train)."""
    return bool(getattr(pipe, "_nbd_shapes", False))


def set_speaks_shapes(pipe: Any, shapes: bool) -> None:
    pipe._nbd_shapes = bool(shapes)


def tiny_decoder(pipe: Any) -> Any:
    """The tiny decoder of this pipeline (set_tiny_decoder, or shipped in its folder), or None."""
    return getattr(pipe, "_nbd_tiny_vae", None)


def set_tiny(pipe: Any, decoder: Any) -> None:
    """Hang `decoder` on `pipe` as its tiny decoder (None takes it away)."""
    if decoder is None:
        pipe.__dict__.pop("_nbd_tiny_vae", None)
    else:
        pipe._nbd_tiny_vae = decoder


def lora_info(pipe: Any) -> dict | None:
    """The LoRA nbdiffuse loaded into `pipe` (source, file, scale, components), or None."""
    return getattr(pipe, "_nbd_lora", None)


def set_lora_info(pipe: Any, info: dict | None) -> None:
    pipe._nbd_lora = info


def shipped_approx(vae: Any) -> Any:
    """The approx decoder the model's folder ships for this VAE, or None."""
    return getattr(vae, "_nbd_approx", None)


def set_shipped_approx(vae: Any, decoder: Any) -> None:
    vae._nbd_approx = decoder
