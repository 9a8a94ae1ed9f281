"""SD3's ControlNet (SD3ControlNetModel, several in an SD3MultiControlNetModel) in nbdiffuse's own loop, as
diffusers' StableDiffusion3ControlNetPipeline runs it, bit for bit. core/controlnet.py plans the run and holds
what every ControlNet shares (scales, windows, strength, branches); this module is what SD3's does differently.

- The picture is read in the latent space. The pipeline resizes it (prepare_image, one row or guidance's two)
  and encodes it with the VAE: a sample of the latent distribution, drawn from torch's global generator (so
  two pipe(...) calls differ unless torch.manual_seed comes first). nbdiffuse draws it from a generator seeded
  with the run's seed, on the VAE's device: the numbers torch.manual_seed(seed); pipe(...) draws. Every
  picture of several is encoded in turn from that one generator, as the pipeline does. The sample is shifted
  and scaled as the transformer's latents are, with no shift where the (first) ControlNet's config has
  force_zeros_for_pooled_projection.
- The ControlNet reads the same latents, timestep and batch rows as the transformer; its text is the prompt's
  embeddings where its config has a joint_attention_dim (else none), and the pooled text is zeros where
  force_zeros_for_pooled_projection says so (the first ControlNet's config decides, for all).
- Its residuals are one per ControlNet block, added to the transformer's blocks
  (block_controlnet_hidden_states); several ControlNets' are summed in their order.
- It has no guess mode.
"""
from __future__ import annotations

from typing import Any

import torch


def is_sd3_controlnet(net: Any) -> bool:
    """An SD3ControlNetModel (or a subclass of it)."""
    return any(cls.__name__ == "SD3ControlNetModel" for cls in type(net).__mro__)


class SD3Control:
    """The SD3 ControlNet's part of a run's ControlStep (core/controlnet.py)."""

    guess_mode = False  # StableDiffusion3ControlNetPipeline takes no guess_mode
    one_row = False

    @staticmethod
    def pictures(step: Any, generator: Any = None) -> dict[bool, list[torch.Tensor]]:
        """The control pictures' latents for one batch row and for guidance's two (each row its own sample),
        each drawn as the pipeline draws it (`generator`, the run's, is not the one it draws from)."""
        return {guided: SD3Control._latents(step, guided) for guided in (False, True)}

    @staticmethod
    def _latents(step: Any, guided: bool) -> list[torch.Tensor]:
        pipe, family = step.family.pipe, step.family
        vae = pipe.vae
        config = step.nets[0].config
        shift = 0.0 if config.get("force_zeros_for_pooled_projection") else vae.config.shift_factor
        device = next(vae.parameters()).device
        generator = torch.Generator(device).manual_seed(int(step.seed))
        latents = []
        for image in step.plan.images:
            picture = pipe.prepare_image(image=image, width=step.width, height=step.height, batch_size=1,
                                         num_images_per_prompt=1, device=family.device, dtype=family.dtype,
                                         do_classifier_free_guidance=guided, guess_mode=False)
            sample = vae.encode(picture).latent_dist.sample(generator=generator)
            latents.append((sample - shift) * vae.config.scaling_factor)
        return latents

    @staticmethod
    def run(step: Any, j: int, net: Any, batch: torch.Tensor, t: Any, text: dict, picture: torch.Tensor,
            scale: float, guess: bool) -> list[torch.Tensor]:
        """One ControlNet's block residuals for this evaluation (`text`: its rows' text arguments), scaled."""
        config = step.nets[0].config
        pooled = text["pooled_projections"]
        if config.get("force_zeros_for_pooled_projection"):
            pooled = torch.zeros_like(pooled)
        hidden = text["encoder_hidden_states"] if config.get("joint_attention_dim") is not None else None
        return list(net(hidden_states=batch, timestep=t.expand(batch.shape[0]), encoder_hidden_states=hidden,
                        pooled_projections=pooled, controlnet_cond=picture, conditioning_scale=scale,
                        return_dict=False)[0])

    @staticmethod
    def extra(step: Any, residuals: list[torch.Tensor]) -> dict:
        """The transformer's arguments that add them."""
        return {"block_controlnet_hidden_states": residuals}
