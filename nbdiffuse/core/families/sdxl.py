"""StableDiffusionXLPipeline: two text encoders and size conditioning."""
from __future__ import annotations

import inspect

from .base import Conditioning
from .sd import StableDiffusionFamily


class StableDiffusionXLFamily(StableDiffusionFamily):
    """StableDiffusionXLPipeline (and SDXL Turbo checkpoints): two text encoders, size conditioning."""

    name = "stable-diffusion-xl"
    default_guidance = 5.0
    upcasts_encoder = True  # its pipelines encode a picture with an fp32 VAE where the config says force_upcast

    def encode(self, prompt: str, negative_prompt: str | None, size: tuple[int, int] | None = None) -> Conditioning:
        # "" -> None keeps SDXL's own default (zeroed negative embeddings when
        # force_zeros_for_empty_prompt), exactly what pipe(...) does without a negative prompt.
        pos, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=prompt, device=self.device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative_prompt or None,
        )
        height, width = size or self.default_size()
        if self.pipe.text_encoder_2 is None:
            projection_dim = int(pooled.shape[-1])
        else:
            projection_dim = self.pipe.text_encoder_2.config.projection_dim
        size, corner = (height, width), (0, 0)
        get_ids = self.pipe._get_add_time_ids
        takes = inspect.signature(get_ids).parameters
        if "aesthetic_score" in takes:
            # SDXL's image-to-image and inpainting pipelines: aesthetic scores (their defaults 6 and 2.5) where their
            # config asks; the negative row's sizes where they take them (the ControlNet inpainting one does not)
            sizes = {"negative_original_size": size, "negative_crops_coords_top_left": corner,
                     "negative_target_size": size} if "negative_original_size" in takes else {}
            time_ids, neg_ids = get_ids(size, corner, size, 6.0, 2.5, **sizes, dtype=pos.dtype,
                                        text_encoder_projection_dim=projection_dim)
        else:
            time_ids = neg_ids = get_ids(size, corner, size, dtype=pos.dtype, text_encoder_projection_dim=projection_dim)
        return self._pack(
            {"encoder_hidden_states": pos, "text_embeds": pooled, "time_ids": time_ids.to(self.device)},
            {"encoder_hidden_states": neg, "text_embeds": neg_pooled, "time_ids": neg_ids.to(self.device)},
        )

    def _unet_kwargs(self, conditioning: dict) -> dict:
        return {
            "encoder_hidden_states": conditioning["encoder_hidden_states"],
            "added_cond_kwargs": {"text_embeds": conditioning["text_embeds"], "time_ids": conditioning["time_ids"]},
        }

