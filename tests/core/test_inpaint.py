"""Inpainting (core/inpaint.py): trace(image=..., mask_image=...) on diffusers' inpainting pipelines (SD's, here, in
its family's loop: core/inpaint_loop.py; tests/core/test_inpaint_loop.py checks what that loop adds): bit for bit
pipe(...)'s run with x0 at every step, the mask kept in the run's params and its file, every wrong mask refused by
name before any model work, and load_pipeline(inpaint=True). The pipeline matrix runs the watched ones."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
from nbdiffuse.core.pipe_attrs import speaks_shapes
from nbdiffuse.core.trace import prepare
from nbdiffuse.core.nbd_schema import TrajectoryFileError

from inpaint_helpers import PROMPT, SIZE, picture, square_mask


@pytest.fixture(scope="module")
def inpaint_pipe(sd_pipe):
    """The tiny SD model's inpainting sibling: a 4-channel UNet, so the pipeline blends the kept part back."""
    return nbd.load_pipeline(sd_pipe, inpaint=True)


@pytest.fixture(scope="module")
def inpaint9_pipe(sd_pipe):
    """An inpainting UNet (9 input channels: x_t, the mask, the masked picture's latents), as inpainting checkpoints
    have."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_config({**sd_pipe.unet.config, "in_channels": 9})
    pipe = StableDiffusionInpaintPipeline(**{**sd_pipe.components, "unet": unet, "safety_checker": None},
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipes_own(pipe, mask, strength=0.75, steps=4):
    """pipe(...)'s own run: the latents its callback saw at each step, and what it returned."""
    seen = []

    def keep(p, i, t, kwargs):
        seen.append(kwargs["latents"][0].clone())
        return kwargs

    torch.manual_seed(1)
    out = pipe(PROMPT, image=picture(), mask_image=mask, strength=strength, num_inference_steps=steps,
               guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(1), output_type="latent",
               height=SIZE, width=SIZE, callback_on_step_end=keep)
    return seen, out.images[0]


@pytest.mark.parametrize("which", ["inpaint_pipe", "inpaint9_pipe"], ids=["blended", "9-channel"])
def test_an_inpainting_run_is_the_pipelines_own_with_x0(which, request):
    pipe = request.getfixturevalue(which)
    mask = square_mask()
    traj = nbd.trace(pipe, PROMPT, steps=4, seed=1, image=picture(), strength=0.75, mask_image=mask,
                     height=SIZE, width=SIZE)
    seen, out = pipes_own(pipe, mask)
    assert len(traj) == len(seen) == 3 and traj.params["start_step"] == 1
    assert all(torch.equal(step.latents, latents) for step, latents in zip(traj, seen))
    assert torch.equal(traj.output_latents, out) and traj.has_x0
    assert all(step.pred_x0 is not None and torch.isfinite(step.pred_x0).all() for step in traj)
    assert traj.params["mask"]["share"] == 0.25 and traj.params["mask"]["width"] == SIZE
    other = nbd.trace(pipe, PROMPT, steps=4, seed=1, image=picture(), strength=0.75, mask_image=square_mask(0, 16),
                      height=SIZE, width=SIZE)
    assert not torch.equal(other.output_latents, traj.output_latents)  # the mask reaches the model


def test_a_blended_run_keeps_the_picture_outside_the_mask(inpaint_pipe):
    """Where the mask is black the last x_t is the picture's own latents, put back by the pipeline; inside it the
    model's."""
    traj = nbd.trace(inpaint_pipe, PROMPT, steps=4, seed=1, image=picture(), strength=1.0, mask_image=square_mask(),
                     height=SIZE, width=SIZE)
    again = nbd.trace(inpaint_pipe, "a blue square", steps=4, seed=1, image=picture(), strength=1.0,
                      mask_image=square_mask(), height=SIZE, width=SIZE)
    a, b = traj.final_latents, again.final_latents
    f = SIZE // a.shape[-1]  # the VAE's factor: the mask at the latents' size
    inside = torch.zeros(a.shape[-2:], dtype=torch.bool)
    inside[8 // f:24 // f, 8 // f:24 // f] = True
    assert torch.equal(a[:, ~inside], b[:, ~inside])  # another prompt, the same kept part
    assert not torch.equal(a[:, inside], b[:, inside])


def test_a_mask_is_kept_with_the_run_and_in_its_file(inpaint_pipe, tmp_path):
    traj = nbd.trace(inpaint_pipe, PROMPT, steps=3, seed=1, image=picture(), strength=1.0, mask_image=square_mask(),
                     height=SIZE, width=SIZE)
    assert traj.mask.size == (SIZE, SIZE) and np.array_equal(np.asarray(traj.mask), np.asarray(square_mask()))
    traj.save(tmp_path / "run.nbd")
    loaded = nbd.Trajectory.load(tmp_path / "run.nbd")
    assert loaded.params["mask"] == traj.params["mask"] and loaded.has_x0
    assert np.array_equal(np.asarray(loaded.mask), np.asarray(traj.mask))  # the mask itself, as the user gave it
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tmp_path / "run.nbd"), framework="pt") as handle:
        header = handle.metadata()
    meta = json.loads(header["meta"])
    meta["params"]["mask"]["share"] = 2
    save_file(load_file(str(tmp_path / "run.nbd")), str(tmp_path / "bad.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match=r"params\.mask\.share must be the share of the picture it repaints"):
        nbd.Trajectory.load(tmp_path / "bad.nbd")
    assert header["format_version"] == "6"  # readers before 6 know no start picture: refused as newer
    tensors = load_file(str(tmp_path / "run.nbd"))
    save_file(dict(tensors, mask=torch.zeros((4, 4), dtype=torch.uint8)), str(tmp_path / "shape.nbd"), metadata=header)
    with pytest.raises(TrajectoryFileError, match=r"tensor mask must be a uint8 tensor of shape \(32, 32\)"):
        nbd.Trajectory.load(tmp_path / "shape.nbd")


@pytest.mark.parametrize("mask, error, match", [
    (None, ValueError, r"mask_image: StableDiffusionInpaintPipeline repaints where a mask is white; pass mask_image"),
    (Image.new("L", (SIZE, SIZE), 0), ValueError, "mask_image is black everywhere, so nothing would be repainted"),
    (Image.new("L", (16, 32), 255), ValueError, r"mask_image is 16x32 and the start picture 32x32: .*the picture's size"),
    (np.zeros((SIZE, SIZE), np.float32), ValueError, "mask_image as an array must be HxW"),
    ([[1]], TypeError, "mask_image must be a PIL.Image, a numpy array or an image file path, got list"),
    ("no-such-mask.png", ValueError, "mask_image"),
])
def test_a_wrong_mask_is_refused_by_name_and_the_next_run_works(inpaint_pipe, mask, error, match):
    with pytest.raises(error, match=match):
        prepare(inpaint_pipe, PROMPT, steps=2, image=picture(), mask_image=mask)
    traj = nbd.trace(inpaint_pipe, PROMPT, steps=2, seed=1, image=picture(), mask_image=square_mask(),
                     height=SIZE, width=SIZE)
    assert len(traj) == 2


def test_masks_of_every_kind(inpaint_pipe, tmp_path):
    """A bool or uint8 array, a 3-channel picture, a file, the same mask drawn at twice the scale: the same mask,
    the same run."""
    square_mask().resize((2 * SIZE, 2 * SIZE), Image.NEAREST).save(tmp_path / "mask.png")
    runs = []
    for mask in (np.asarray(square_mask()) > 0, np.asarray(square_mask()), square_mask().convert("RGB"),
                 tmp_path / "mask.png"):
        runs.append(nbd.trace(inpaint_pipe, PROMPT, steps=2, seed=1, image=picture(), mask_image=mask,
                              height=SIZE, width=SIZE))
    assert all(torch.equal(run.final_latents, runs[0].final_latents) for run in runs)
    assert len({run.params["mask"]["sha256"] for run in runs}) == 1


def test_a_mask_for_a_pipeline_that_does_not_inpaint_names_the_one_that_does(sd_pipe, generic_pipe):
    for pipe in (sd_pipe, generic_pipe):
        with pytest.raises(ValueError, match=rf"mask_image: {type(pipe).__name__} does not inpaint .*"
                                             r"nbd.load_pipeline\(pipe, inpaint=True\)"):
            prepare(pipe, PROMPT, steps=2, image=picture(), mask_image=square_mask())


def test_pipe_kwargs_mask_image_is_trace_s_own_and_a_crop_is_refused(inpaint_pipe):
    with pytest.raises(ValueError, match=r"pipe_kwargs\['mask_image'\]: nbdiffuse sets mask_image itself; pass "
                                         r"trace's mask_image=\.\.\. instead"):
        prepare(inpaint_pipe, PROMPT, image=picture(), pipe_kwargs={"mask_image": square_mask()})
    with pytest.raises(ValueError, match=r"pipe_kwargs\['padding_mask_crop'\]=4: StableDiffusionInpaintPipeline "
                                         r"inpaints a crop around the mask .* leave it out"):
        prepare(inpaint_pipe, PROMPT, image=picture(), mask_image=square_mask(), pipe_kwargs={"padding_mask_crop": 4})


def test_load_pipeline_inpaint(sd_pipe, inpaint_pipe, pixart_pipe):
    from diffusers import StableDiffusionInpaintPipeline

    assert type(inpaint_pipe) is StableDiffusionInpaintPipeline and inpaint_pipe.unet is sd_pipe.unet
    assert nbd.load_pipeline(inpaint_pipe, inpaint=True) is inpaint_pipe  # already one
    embedded = nbd.load_pipeline(inpaint=True)
    assert type(embedded) is StableDiffusionInpaintPipeline
    assert speaks_shapes(embedded)  # still the embedded model: its attributes came along
    with pytest.raises(TypeError, match="inpaint must be True or False, got 'yes'"):
        nbd.load_pipeline(sd_pipe, inpaint="yes")
    with pytest.raises(ValueError, match="inpaint=True: PixArtSigmaPipeline has no inpainting pipeline in diffusers"):
        nbd.load_pipeline(pixart_pipe, inpaint=True)


def test_a_sweep_over_masks(inpaint_pipe):
    """mask_image is one of trace's keywords, so a sweep takes it, fixed or as an axis."""
    sweep = nbd.sweep(inpaint_pipe, PROMPT, {"mask_image": [square_mask(), square_mask(0, 16)]}, steps=2, seed=1,
                      image=picture(), height=SIZE, width=SIZE, progress=False)
    shares = [run.params["mask"]["share"] for run in sweep.runs]
    assert shares == [0.25, 0.25] and not torch.equal(sweep.runs[0].final_latents, sweep.runs[1].final_latents)
