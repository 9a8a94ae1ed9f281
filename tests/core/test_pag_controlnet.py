"""The PAG ControlNet pipelines of SD and SDXL in their family's loop (core/pag.py, core/controlnet.py): the
ControlNet reads every row of a PAG step's batch, as diffusers' pipelines run it; bit for bit their pipe(...)."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse import testing
from control_helpers import picture

PROMPT = "a red circle"
HINT = picture(3)


@pytest.fixture(scope="module")
def pag_nets():
    made = {name: nbd.load_pipeline(testing.tiny_controlnet_pipeline(xl=xl), pag="mid")
            for name, xl in (("sd", False), ("sdxl", True))}
    assert [type(pipe).__name__ for pipe in made.values()] == [
        "StableDiffusionControlNetPAGPipeline", "StableDiffusionXLControlNetPAGPipeline"]
    return made


def own(pipe, guidance, **kw):
    generator = torch.Generator("cpu").manual_seed(2)
    return pipe(prompt=PROMPT, image=HINT, num_inference_steps=4, guidance_scale=guidance, generator=generator,
                output_type="latent", controlnet_conditioning_scale=0.7, control_guidance_start=0.25, **kw).images[0]


# SD's PAG ControlNet pipeline fails in guess mode with guidance (it adds a zero row to residuals of three rows);
# SDXL's run their ControlNet without guess mode
@pytest.mark.parametrize("name, guidance, guess", [("sd", 5.0, False), ("sd", 1.0, False), ("sd", 1.0, True),
                                                   ("sdxl", 5.0, False), ("sdxl", 1.0, False)])
def test_a_pag_controlnet_run_is_bit_for_bit_the_pipelines_own(pag_nets, name, guidance, guess):
    pipe = pag_nets[name]
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=guidance, seed=2, control_image=HINT, control_scale=0.7,
                     control_start=0.25, control_guess_mode=guess, pipe_kwargs={"pag_scale": 2.5})
    assert torch.equal(traj[-1].latents, own(pipe, guidance, pag_scale=2.5, **({"guess_mode": True} if guess else {})))
    assert traj.params["pag"]["scale"] == 2.5 and all(step.eps_perturbed is not None for step in traj)
    strengths = [step.control_strength for step in traj]
    assert strengths[0] == 0.0 and all(s > 0 for s in strengths[1:])  # the window: from a quarter of the run


def test_guess_mode_with_guidance_reads_every_row_and_branches_replay(pag_nets):
    pipe = pag_nets["sd"]
    run = dict(steps=4, guidance=5.0, seed=1, control_image=HINT)
    guess = nbd.trace(pipe, PROMPT, control_guess_mode=True, **run)
    plain = nbd.trace(pipe, PROMPT, **run)
    assert not torch.equal(guess[-1].latents, plain[-1].latents)
    assert torch.equal(nbd.branch(pipe, guess, at=1)[-1].latents, guess[-1].latents)
    neither = nbd.branch(pipe, plain, at=1, pag_scale=0.0, control_scale=0.0)
    assert [s.pag_scale for s in neither][2:] == [0.0, 0.0] and [s.control_strength for s in neither][2:] == [0.0, 0.0]
    assert not torch.equal(plain.guided_x0(2, 5.0, pag_scale=0.0), plain[2].pred_x0)  # PAG's term, re-weighed


def test_sdxls_pag_controlnet_pipelines_have_no_guess_mode(pag_nets):
    from nbdiffuse.core.generic_control import takes_guess_mode

    with pytest.raises(ValueError, match="control_guess_mode=True: StableDiffusionXLControlNetPAGPipeline runs its "
                                         "ControlNet without guess mode"):
        nbd.core.prepare(pag_nets["sdxl"], PROMPT, steps=2, control_image=HINT, control_guess_mode=True)
    assert not takes_guess_mode(pag_nets["sdxl"]) and takes_guess_mode(pag_nets["sd"])


def test_several_controlnets_in_a_pag_run():
    from diffusers import MultiControlNetModel, StableDiffusionControlNetPAGPipeline

    one = StableDiffusionControlNetPAGPipeline.from_pipe(testing.tiny_controlnet_pipeline(), pag_applied_layers="mid")
    pipe = StableDiffusionControlNetPAGPipeline.from_pipe(
        one, controlnet=MultiControlNetModel([one.controlnet, testing.tiny_controlnet(one, seed=1)]))
    pipe.set_progress_bar_config(disable=True)
    pictures = [picture(1), picture(2)]
    traj = nbd.trace(pipe, PROMPT, steps=3, guidance=7.5, height=16, width=16, control_image=pictures,
                     control_scale=[0.7, 0.4], control_end=[1.0, 0.5])
    out = pipe(PROMPT, image=pictures, num_inference_steps=3, guidance_scale=7.5, height=16, width=16,
               output_type="latent", generator=torch.Generator().manual_seed(0),
               controlnet_conditioning_scale=[0.7, 0.4], control_guidance_start=[0.0, 0.0],
               control_guidance_end=[1.0, 0.5]).images[0]
    assert traj.params["family"] == "stable-diffusion" and torch.equal(traj.final_latents, out)
    assert traj.params["control"]["nets"] == 2 and [s.control_scale for s in traj] == [[0.7, 0.4]] * 3
