"""Flux's ControlNet (FluxControlNetModel, several in a FluxMultiControlNetModel) in nbdiffuse's own loop, as
diffusers' FluxControlNetPipeline runs it, bit for bit. core/controlnet.py plans the run and holds what every
ControlNet shares; this module is what Flux's does differently.

- The picture (prepare_image: one row, whatever the guidance) is encoded with the VAE, a sample of its latent
  distribution drawn from the run's own generator before the start noise (so a run with a control picture
  starts from other noise than one without, as in the pipeline), shifted and scaled, and packed into 2 x 2
  tokens. A ControlNet with an input_hint_block (XLabs') reads the picture itself, and the transformer
  repeats its residuals over its blocks (controlnet_blocks_repeat), as the pipeline decides by the first
  ControlNet. A branch draws the parent's control latents again from the parent's seed.
- The ControlNet runs once per evaluation, on the prompt's text alone (its embeddings, pooled text and token
  ids), the noisy latents packed, the timestep / 1000 and, where its config has guidance_embeds, the guidance
  value as an input; its residuals go to the transformer's double and single blocks, to the prompt's
  evaluation and, with true guidance (a Flux without guidance embeddings), to the negative prompt's as well.
- A union ControlNet reads which kind of picture each is (control_mode, core/control_mode.py) as the pipeline
  hands it over: a (1, 1) long tensor. No guess mode.
"""
from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from .control_mode import nets_of
from .families.flux import pack


def is_flux_controlnet(net: Any) -> bool:
    """A FluxControlNetModel (or a subclass of it)."""
    return any(cls.__name__ == "FluxControlNetModel" for cls in type(net).__mro__)


def _encodes(step: Any) -> bool:
    """The pictures go through the VAE (no input_hint_block on the first ControlNet)."""
    return getattr(step.nets[0], "input_hint_block", None) is None


class FluxControl:
    """The Flux ControlNet's part of a run's ControlStep (core/controlnet.py)."""

    guess_mode = False  # FluxControlNetPipeline takes no guess_mode
    one_row = True  # the ControlNet reads the prompt's row once; its residuals serve every evaluation

    @staticmethod
    def pictures(step: Any, generator: torch.Generator | None) -> dict[bool, list[torch.Tensor]]:
        """The control pictures as the transformer's ControlNet reads them (the same for guided steps)."""
        pipe, family = step.family.pipe, step.family
        if generator is None:  # a branch: the parent's first draws again
            generator = torch.Generator("cpu").manual_seed(int(step.seed))
        vae = pipe.vae
        made = []
        for image in step.plan.images:
            picture = pipe.prepare_image(image=image, width=step.width, height=step.height, batch_size=1,
                                         num_images_per_prompt=1, device=family.device, dtype=vae.dtype)
            if _encodes(step):
                sample = vae.encode(picture).latent_dist.sample(generator)
                picture = pack((sample - vae.config.shift_factor) * vae.config.scaling_factor)
            made.append(picture)
        return {False: made, True: made}

    @staticmethod
    def run(step: Any, j: int, net: Any, batch: torch.Tensor, t: Any, text: dict, picture: torch.Tensor,
            scale: float, guess: bool) -> list[torch.Tensor]:
        """ControlNet j's residuals (`text`: the prompt's row, one_row), scaled: its double blocks', then its
        single blocks'."""
        modes = step.plan.modes or []
        mode = None if j >= len(modes) or modes[j] is None else \
            torch.tensor(modes[j]).to(picture.device, dtype=torch.long).view(-1, 1).expand(picture.shape[0], 1)
        tokens = pack(batch)
        timestep = t.expand(tokens.shape[0]).to(tokens.dtype) / 1000
        guidance = None
        if net.config.get("guidance_embeds"):
            guidance = torch.tensor([controlnet_guidance(step)], device=tokens.device).expand(tokens.shape[0])
        blocks, singles = net(hidden_states=tokens, controlnet_cond=picture, controlnet_mode=mode,
                              conditioning_scale=scale, timestep=timestep, guidance=guidance,
                              pooled_projections=text["pooled_projections"],
                              encoder_hidden_states=text["encoder_hidden_states"], txt_ids=text["txt_ids"],
                              img_ids=text["img_ids"], return_dict=False)
        blocks, singles = list(blocks or []), list(singles or [])
        split = step.split
        if split is not None and split != len(blocks):
            raise ValueError(f"the ControlNets of {type(step.net).__name__} differ in their number of blocks "
                             f"({split} and {len(blocks)}): their residuals cannot be summed")
        step.split = len(blocks)
        return blocks + singles

    @staticmethod
    def extra(step: Any, residuals: list[torch.Tensor]) -> dict:
        """The transformer's arguments that add them."""
        split = step.split
        return {"controlnet_block_samples": residuals[:split] or None,
                "controlnet_single_block_samples": residuals[split:] or None,
                "controlnet_blocks_repeat": not _encodes(step)}


def controlnet_guidance(step: Any) -> float:
    """The guidance a ControlNet with guidance embeddings reads: the step's, on a guidance-distilled Flux (what
    the pipeline's guidance_scale sets); else the pipeline's default guidance_scale, which true guidance leaves."""
    return float(step.guidance) if step.family.distilled else _own_guidance(type(step.family.pipe))


@functools.lru_cache(maxsize=None)
def _own_guidance(pipe_class: type) -> float:
    """A pipeline class's default guidance_scale (read once per class, not at every step)."""
    value = getattr(inspect.signature(pipe_class.__call__).parameters.get("guidance_scale"), "default", None)
    return float(value) if isinstance(value, numbers.Real) else 3.5


def skip_draws(family: Any, traj: Any, generator: torch.Generator) -> None:
    """Draw from `generator` what a Flux ControlNet run drew before its start noise (its pictures' latent
    samples), so that a branch's sampler continues with the run's numbers."""
    net = getattr(family.pipe, "controlnet", None)
    control = traj.params.get("control")
    if net is None or control is None or not is_flux_controlnet(nets_of(net)[0]) or \
            getattr(nets_of(net)[0], "input_hint_block", None) is not None:
        return
    p = traj.params
    vae = family.pipe.vae
    shape = (1, int(vae.config.latent_channels), *family.latent_size(p["height"], p["width"]))
    for _ in range(int(control.get("nets") or 1)):
        randn_tensor(shape, generator=generator, device=next(vae.parameters()).device, dtype=vae.dtype)

