"""SD's and SDXL's ControlNets in nbdiffuse's own loop (core/controlnet.py plans the run and sums the
residuals): the ControlNetModel of StableDiffusion(XL)ControlNetPipeline and their image-to-image siblings,
and SDXL's union ControlNet (ControlNetUnionModel, several in a MultiControlNetUnionModel), which reads which
kind of picture each is (control_mode, core/control_mode.py) as StableDiffusionXLControlNetUnionPipeline hands
it over: a one-hot row of its kinds per batch row of the guided step (control_type), and the kind's number
(control_type_idx). Both add their residuals to the UNet's skip connections.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch


def is_union_unet_controlnet(net: Any) -> bool:
    """A ControlNetUnionModel (SDXL's union ControlNet) or a subclass of it."""
    return any(cls.__name__ == "ControlNetUnionModel" for cls in type(net).__mro__)


class UNetControl:
    """SD's and SDXL's ControlNet (ControlNetModel): residuals for the UNet's skip connections."""

    guess_mode = True
    one_row = False

    @staticmethod
    def pictures(step: Any, generator: Any = None) -> dict[bool, list[torch.Tensor]]:
        """The pictures as the pipeline's own prepare_image makes them (the same values in the same memory
        layout, which the ControlNet's convolutions are sensitive to), for one row and for guidance's two;
        guess mode: one row for guided steps too (the ControlNet reads the prompt's row only)."""
        pipe = step.family.pipe
        prepare = getattr(pipe, "prepare_control_image", None) or pipe.prepare_image  # image to image: its own name
        # an inpainting one's takes the crop around the mask, which nbdiffuse refuses (core/inpaint.py check_crop)
        crop = {"crops_coords": None, "resize_mode": "default"} \
            if "crops_coords" in inspect.signature(prepare).parameters else {}
        return {guided: [prepare(image, step.width, step.height, 1, 1, step.family.device, step.net.dtype,
                                 do_classifier_free_guidance=guided, guess_mode=step.plan.guess_mode, **crop)
                         for image in step.plan.images] for guided in (False, True)}

    @staticmethod
    def run(step: Any, j: int, net: Any, batch: torch.Tensor, t: Any, text: dict,
            picture: torch.Tensor, scale: float, guess: bool) -> list[torch.Tensor]:
        """One ControlNet's residuals (`text`: its rows' text arguments), scaled: the down blocks', then the middle
        block's."""
        kwargs = step.family._unet_kwargs(text)
        down, mid = net(batch, t, controlnet_cond=picture, conditioning_scale=scale, guess_mode=guess,
                        return_dict=False, **kwargs)
        return [*down, mid]

    @staticmethod
    def extra(step: Any, residuals: list[torch.Tensor]) -> dict:
        return {"down_block_additional_residuals": residuals[:-1], "mid_block_additional_residual": residuals[-1]}


class UnionControl(UNetControl):
    """SDXL's union ControlNet: a ControlNetModel's residuals, told the kind of its picture."""

    @staticmethod
    def run(step: Any, j: int, net: Any, batch: torch.Tensor, t: Any, text: dict,
            picture: torch.Tensor, scale: float, guess: bool) -> list[torch.Tensor]:
        """ControlNet j's residuals for its one picture of kind control_mode[j], scaled."""
        mode = step.plan.modes[j]
        kwargs = step.family._unet_kwargs(text)
        kinds = torch.zeros(net.config.num_control_type).scatter_(0, torch.tensor([mode]), 1)
        control_type = kinds.reshape(1, -1).to(batch.device, dtype=kwargs["encoder_hidden_states"].dtype)
        # a row per row the ControlNet reads (the pipeline repeats it for guidance's two rows even in guess mode,
        # where the ControlNet reads one, and fails there; nbdiffuse gives it the one)
        down, mid = net(batch, t, controlnet_cond=[picture], control_type=control_type.repeat(batch.shape[0], 1),
                        control_type_idx=[mode], conditioning_scale=scale, guess_mode=guess, return_dict=False,
                        **kwargs)
        return [*down, mid]
