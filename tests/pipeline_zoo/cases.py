"""The pipeline matrix's cases: each diffusers class it builds, with how to run it and what it expects.

`kind` is what nbdiffuse makes of the class: "covered" (a family nbdiffuse drives itself: x0, what-if,
branching) or "watched" (its own loop, watched through callback_on_step_end: x_t, and x0 read from what its
sampler is given where `x0`; `x0_lands`: its schedule ends at sigma 0, so its last step lands on that step's x0).
`control`: a control picture goes with every check (trace's control_image, the pipeline's own name for it in
pipe(...), the Explorer's control picture). Every check runs the size as given (resolution binning off, in trace
and in the reference pipe(...) call alike). `xfail` names a check that fails today with the reason (strict
marks: a check that passes fails). `pipe_kwargs`: the pipeline's own keywords a run needs, passed in every check
(trace, pipe(...) and the Explorer's Generate).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import builders
import builders_more
import builders_more2
import builders_more3
import builders_control
import builders_inpaint

CHECKS = ("parity", "views", "files", "explorer")


@dataclass(frozen=True)
class Case:
    cls: str
    build: Callable
    kind: str = "watched"
    size: tuple[int, int] = (32, 32)  # (height, width)
    guidance: float = 4.0
    image: bool = False  # image to image: a start picture and strength 0.6
    mask: bool = False  # inpainting: a mask with the start picture (trace's mask_image; image is True too)
    previews: bool = True  # False: its latents have no picture form here (no decoder, or packed)
    xfail: dict[str, str] = field(default_factory=dict)  # check -> "#21 X: why"
    pipe_kwargs: dict = field(default_factory=dict)  # the pipeline's own keywords a run needs, in every check
    control: bool = False  # a ControlNet pipeline: trace(control_image=...), pipe(...) under its own name
    control_mode: int | None = None  # a union ControlNet's kind of picture, with the control picture
    x0: bool = True  # a watched run reads x0 from its sampler (False: a prediction type without the formula)
    x0_lands: bool = True  # its last step's x_t is that step's x0 (False: a schedule that ends above sigma 0)

    @property
    def status(self) -> str:
        """The table's word for it: covered, x0 and x_t, or x_t only."""
        return "covered" if self.kind == "covered" else "x0 and x_t" if self.x0 else "x_t only"

    @property
    def id(self) -> str:
        return self.cls


CASES = [
    Case("StableDiffusionPipeline", builders.sd, "covered", (16, 16), 7.5),
    Case("StableDiffusionXLPipeline", builders.sdxl, "covered", (16, 16), 5.0),
    Case("StableDiffusion3Pipeline", builders.sd3, "covered", (16, 16), 7.0),
    Case("FluxPipeline", builders.flux, "covered", (32, 32), 3.5),
    Case("StableDiffusionPAGPipeline", builders.sd_pag, "covered", size=(16, 16), guidance=7.5),
    Case("StableDiffusionXLPAGPipeline", builders.sdxl_pag, "covered", size=(16, 16), guidance=5.0),
    Case("StableDiffusion3PAGPipeline", builders.sd3_pag, "covered", size=(16, 16), guidance=7.0),
    Case("LatentConsistencyModelPipeline", builders.lcm, size=(16, 16), guidance=8.5),
    Case("SanaPipeline", builders.sana),
    Case("Kandinsky3Pipeline", builders.kandinsky3, size=(64, 64), guidance=3.0),  # 32: see test_zoo_defaults.py
    Case("AuraFlowPipeline", builders.auraflow, guidance=3.5),
    Case("CogView3PlusPipeline", builders.cogview3plus, guidance=7.0),
    Case("ZImagePipeline", builders.zimage, guidance=5.0),
    Case("Lumina2Pipeline", builders.lumina2, guidance=4.0),
    Case("CogView4Pipeline", builders.cogview4, guidance=3.5),
    # the size as given (its binning would make 1024 x 1024); its DDPM sampler draws noise
    Case("HunyuanDiTPipeline", builders.hunyuan_dit, guidance=5.0),
    Case("QwenImagePipeline", builders.qwenimage, previews=False),
    Case("LuminaPipeline", builders.lumina, guidance=4.0),
    Case("StableCascadePriorPipeline", builders.cascade_prior, size=(256, 256), guidance=4.0, previews=False, x0=False),
    Case("SanaPAGPipeline", builders.sana_pag),
    Case("SanaSprintPipeline", builders.sana_sprint, guidance=4.5),
    Case("StableDiffusionPanoramaPipeline", builders.panorama, size=(16, 16), guidance=7.5),
    Case("ChromaPipeline", builders.chroma, guidance=5.0),
    Case("BriaPipeline", builders.bria, guidance=5.0),
    Case("StableDiffusionImg2ImgPipeline", builders.sd_img2img, "covered", size=(16, 16), guidance=7.5, image=True),
    Case("StableDiffusionXLImg2ImgPipeline", builders.sdxl_img2img, "covered", size=(16, 16), guidance=5.0, image=True),
    Case("StableDiffusion3Img2ImgPipeline", builders.sd3_img2img, "covered", size=(16, 16), guidance=7.0, image=True),
    Case("FluxImg2ImgPipeline", builders.flux_img2img, "covered", size=(32, 32), guidance=3.5, image=True),
    Case("StableDiffusionPAGImg2ImgPipeline", builders.sd_pag_img2img, "covered", size=(16, 16), guidance=7.5, image=True),
    Case("StableDiffusionXLPAGImg2ImgPipeline", builders.sdxl_pag_img2img, "covered", size=(16, 16), guidance=5.0, image=True),
    Case("StableDiffusion3PAGImg2ImgPipeline", builders.sd3_pag_img2img, "covered", size=(16, 16), guidance=7.0, image=True),
    Case("LatentConsistencyModelImg2ImgPipeline", builders.lcm_img2img, size=(16, 16), guidance=8.5, image=True),
    Case("Kandinsky3Img2ImgPipeline", builders.kandinsky3_img2img, size=(64, 64), guidance=3.0, image=True),
    Case("ZImageImg2ImgPipeline", builders.zimage_img2img, guidance=5.0, image=True),
    Case("ChromaImg2ImgPipeline", builders.chroma_img2img, guidance=5.0, image=True),
    Case("QwenImageImg2ImgPipeline", builders.qwenimage_img2img, image=True, previews=False),
    Case("SanaSprintImg2ImgPipeline", builders.sana_sprint_img2img, guidance=4.5, image=True),
    Case("Flux2Pipeline", builders_more.flux2, previews=False),
    # output_type='latent' returns its VAE's latents (4 x 16 x 16), not the packed tokens (64 x 16) its loop
    # denoises: traj.output holds them (#21 K)
    Case("Flux2KleinPipeline", builders_more.flux2_klein, previews=False),
    Case("Flux2KleinKVPipeline", builders_more.flux2_klein_kv, previews=False),
    Case("HunyuanDiTPAGPipeline", builders_more.hunyuan_dit_pag, guidance=5.0),
    Case("AltDiffusionPipeline", builders_more.alt_diffusion, size=(16, 16), guidance=7.5),
    Case("HiDreamImagePipeline", builders_more.hidream, guidance=5.0),
    Case("Kandinsky5T2IPipeline", builders_more.kandinsky5_t2i, guidance=3.5, previews=False),
    # output_type='latent' drops the frame axis (C x h x w; its steps: C x 1 x h x w): the same numbers (#21 C)
    Case("Cosmos2TextToImagePipeline", builders_more.cosmos2_t2i, guidance=7.0, previews=False, x0_lands=False),
    Case("QwenImage21Pipeline", builders_more.qwenimage21, previews=False),  # its _unpack_latents: 5-D
    Case("OvisImagePipeline", builders_more.ovis_image, guidance=5.0),
    Case("Krea2Pipeline", builders_more.krea2, guidance=3.0, previews=False),
    Case("ErnieImagePipeline", builders_more.ernie_image, guidance=4.0, previews=False),  # patchified
    Case("NucleusMoEImagePipeline", builders_more2.nucleus_moe, previews=False),
    Case("BriaFiboPipeline", builders_more2.bria_fibo, guidance=5.0, previews=False),
    Case("BriaFibo2Pipeline", builders_more2.bria_fibo2, guidance=5.0, previews=False),
    # its default guidance_schedule (48 steps) refuses guidance_scale and any other step count
    Case("Ideogram4Pipeline", builders_more2.ideogram4, previews=False, pipe_kwargs={"guidance_schedule": None}),
    Case("HunyuanImagePipeline", builders_more2.hunyuan_image),  # its guiders guide it: guidance is not its input
    Case("GlmImagePipeline", builders_more2.glm_image, guidance=1.5),
    Case("PRXPipeline", builders_more3.prx),
    # pixel space: its steps are the picture itself, and it has no VAE that nbdiffuse could draw them with
    Case("PRXPixelPipeline", builders_more3.prx_pixel, size=(16, 16), previews=False),
    Case("AltDiffusionImg2ImgPipeline", builders_more.alt_diffusion_img2img, size=(16, 16), guidance=7.5, image=True),
    # ControlNet pipelines: the families' own loop (SD, SDXL), or the generic path given the picture
    Case("StableDiffusionControlNetPipeline", builders_control.sd_controlnet, "covered", (16, 16), 7.5, control=True),
    Case("StableDiffusionXLControlNetPipeline", builders_control.sdxl_controlnet, "covered", (16, 16), 5.0,
         control=True),
    Case("StableDiffusionControlNetImg2ImgPipeline", builders_control.sd_controlnet_img2img, "covered", (16, 16),
         7.5, image=True, control=True),
    Case("StableDiffusionXLControlNetImg2ImgPipeline", builders_control.sdxl_controlnet_img2img, "covered",
         (16, 16), 5.0, image=True, control=True),
    Case("StableDiffusionControlNetPAGPipeline", builders_control.sd_controlnet_pag, "covered", size=(16, 16),
         guidance=7.5, control=True),
    # it samples its control picture's latents from torch's global RNG: nbdiffuse's loop draws them from the run's seed
    Case("StableDiffusion3ControlNetPipeline", builders_control.sd3_controlnet, "covered", (16, 16), 7.0,
         control=True),
    Case("FluxControlNetPipeline", builders_control.flux_controlnet, "covered", (32, 32), 3.5, control=True),
    Case("FluxControlNetImg2ImgPipeline", builders_control.flux_controlnet_img2img, "covered", (32, 32), 3.5,
         image=True, control=True),
    Case("StableDiffusionXLControlNetPAGPipeline", builders_control.sdxl_controlnet_pag, "covered", size=(16, 16),
         guidance=5.0, control=True),
    Case("StableDiffusionXLControlNetPAGImg2ImgPipeline", builders_control.sdxl_controlnet_pag_img2img, "covered",
         size=(16, 16), guidance=5.0, image=True, control=True),
    Case("QwenImageControlNetPipeline", builders_control.qwenimage_controlnet, previews=False, control=True),
    Case("SanaControlNetPipeline", builders_control.sana_controlnet, control=True),
    # it samples its control picture's latents from torch's global RNG: a trace seeds it with the run's seed
    Case("CogView4ControlPipeline", builders_control.cogview4_control, size=(16, 16), guidance=3.5, control=True),
    # Flux's own transformer reads the control picture's latents (FLUX.1 Canny / Depth)
    Case("FluxControlPipeline", builders_control.flux_control, size=(32, 32), guidance=3.5, control=True),
    Case("FluxControlImg2ImgPipeline", builders_control.flux_control_img2img, size=(32, 32), guidance=3.5, image=True,
         control=True),
    # ControlNet-XS: a small control network interleaved with the UNet (its `image` is the control picture)
    Case("StableDiffusionControlNetXSPipeline", builders_control.sd_controlnet_xs, size=(16, 16), guidance=7.5,
         control=True),
    Case("StableDiffusionXLControlNetXSPipeline", builders_control.sdxl_controlnet_xs, size=(16, 16), guidance=5.0,
         control=True),
    Case("HunyuanDiTControlNetPipeline", builders_control.hunyuan_dit_controlnet, guidance=5.0, control=True),
    Case("ZImageControlNetPipeline", builders_control.zimage_controlnet, guidance=5.0, control=True),
    # union ControlNets: the control picture with its kind (control_mode)
    Case("StableDiffusionXLControlNetUnionPipeline", builders_control.sdxl_controlnet_union, "covered", (16, 16),
         5.0, control=True, control_mode=3),
    Case("StableDiffusionXLControlNetUnionImg2ImgPipeline", builders_control.sdxl_controlnet_union_img2img,
         "covered", (16, 16), 5.0, image=True, control=True, control_mode=3),
    # inpainting: the start picture and a mask (white repaints); a denoiser without the mask's input channels is
    # blended (the kept part of x_t put back from the picture each step), so its last x_t is not its last x0;
    # SD's and SDXL's run their family's loop (core/inpaint_loop.py)
    Case("StableDiffusionInpaintPipeline", builders_inpaint.sd_inpaint, "covered", (16, 16), 7.5, image=True,
         mask=True, x0_lands=False),
    Case("StableDiffusionXLInpaintPipeline", builders_inpaint.sdxl_inpaint, "covered", (16, 16), 5.0, image=True,
         mask=True, x0_lands=False),
    Case("StableDiffusion3InpaintPipeline", builders_inpaint.sd3_inpaint, "covered", (16, 16), 7.0, image=True,
         mask=True, x0_lands=False),
    Case("FluxInpaintPipeline", builders_inpaint.flux_inpaint, "covered", (32, 32), 3.5, image=True, mask=True,
         x0_lands=False),
    Case("FluxFillPipeline", builders_inpaint.flux_fill, "covered", (32, 32), 3.5, image=True, mask=True),
    Case("StableDiffusionPAGInpaintPipeline", builders_inpaint.sd_pag_inpaint, "covered", (16, 16), guidance=7.5,
         image=True, mask=True, x0_lands=False),
    Case("StableDiffusionXLPAGInpaintPipeline", builders_inpaint.sdxl_pag_inpaint, "covered", (16, 16), guidance=5.0,
         image=True, mask=True, x0_lands=False),
    Case("QwenImageInpaintPipeline", builders_inpaint.qwenimage_inpaint, image=True, mask=True, previews=False,
         x0_lands=False),
    Case("ZImageInpaintPipeline", builders_inpaint.zimage_inpaint, guidance=5.0, image=True, mask=True,
         x0_lands=False),
    Case("Flux2KleinInpaintPipeline", builders_inpaint.flux2_klein_inpaint, image=True, mask=True, previews=False,
         x0_lands=False),
    Case("StableDiffusionControlNetInpaintPipeline", builders_inpaint.sd_controlnet_inpaint, kind="covered", size=(16, 16),
         guidance=7.5, image=True, mask=True, control=True, x0_lands=False),
    Case("StableDiffusionXLControlNetInpaintPipeline", builders_inpaint.sdxl_controlnet_inpaint, kind="covered", size=(16, 16),
         guidance=5.0, image=True, mask=True, control=True, x0_lands=False),
    Case("StableDiffusionControlNetPAGInpaintPipeline", builders_inpaint.sd_controlnet_pag_inpaint, kind="covered", size=(16, 16),
         guidance=7.5, image=True, mask=True, control=True, x0_lands=False),
    Case("StableDiffusionXLControlNetUnionInpaintPipeline", builders_inpaint.sdxl_controlnet_union_inpaint,
         "covered", (16, 16), 5.0, image=True, mask=True, control=True, control_mode=3, x0_lands=False),
    Case("FluxControlNetInpaintPipeline", builders_inpaint.flux_controlnet_inpaint, "covered", (32, 32), 3.5,
         image=True, mask=True, control=True, x0_lands=False),
    Case("FluxControlInpaintPipeline", builders_inpaint.flux_control_inpaint, size=(32, 32), guidance=3.5,
         image=True, mask=True, control=True, x0_lands=False),
]
