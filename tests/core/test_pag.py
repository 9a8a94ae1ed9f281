"""Perturbed-attention guidance in nbdiffuse's loop (core/pag.py): the PAG pipelines of SD, SDXL and SD3 run
bit for bit as their own pipe(...), record the perturbed prediction, and re-weigh and branch it."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse import testing

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def pags(pag_pipe):
    made = {"sd": pag_pipe, "sdxl": nbd.load_pipeline(testing.tiny_sdxl_pipeline(), pag="mid"),
            "sd3": nbd.load_pipeline(testing.tiny_sd3_pipeline(), pag="blocks.0")}
    assert [type(pipe).__name__ for pipe in made.values()] == [
        "StableDiffusionPAGPipeline", "StableDiffusionXLPAGPipeline", "StableDiffusion3PAGPipeline"]
    return made


def own(pipe, steps, seed, guidance, **kw):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(prompt=PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                output_type="latent", height=16, width=16, **kw).images


@pytest.mark.parametrize("name", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("guidance, scale, adaptive", [(7.5, 3.0, 0.0), (1.0, 2.0, 0.0), (5.0, 4.0, 0.005)])
def test_a_pag_run_is_bit_for_bit_the_pipelines_own(pags, name, guidance, scale, adaptive):
    pipe = pags[name]
    kwargs = {"pag_scale": scale, "pag_adaptive_scale": adaptive}
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=guidance, seed=3, height=16, width=16, pipe_kwargs=kwargs)
    assert torch.equal(traj[-1].latents, own(pipe, 4, 3, guidance, **kwargs)[0])
    assert traj.params["pag"] == {"scale": scale, "adaptive_scale": adaptive, "layers": list(pipe.pag_applied_layers),
                                  "scales": [scale] * 4}
    assert traj.has_x0 and traj.capabilities["what_if"] and traj.capabilities["branch"]
    for step in traj:  # the pag each step's sum used, as diffusers' _get_pag_scale makes it
        assert step.pag_scale == pytest.approx(max(0.0, scale - adaptive * (1000 - step.timestep)), abs=1e-5)
        assert step.guided is (guidance > 1) and not torch.equal(step.eps_perturbed, step.eps_cond)
    if adaptive:  # the adaptive scale turns PAG down, then off, as the noise goes
        assert traj[0].pag_scale > traj[1].pag_scale and traj[-1].pag_scale == 0.0


@pytest.mark.parametrize("guidance", [4.5, 1.0])
def test_pixart_sigmas_pag_pipeline_runs_in_the_pixart_family(guidance):
    """PixArtSigmaPAGPipeline takes no callback_on_step_end: only the family's loop can watch it."""
    from diffusers import PixArtSigmaPAGPipeline

    pipe = PixArtSigmaPAGPipeline(**testing.tiny_pixart_pipeline(sigma=True).components, pag_applied_layers="blocks.0")
    pipe.set_progress_bar_config(disable=True)
    traj = nbd.trace(pipe, PROMPT, steps=4, guidance=guidance, seed=1, pipe_kwargs={"pag_scale": 2.0})
    out = pipe(PROMPT, num_inference_steps=4, guidance_scale=guidance, generator=torch.Generator().manual_seed(1),
               output_type="latent", use_resolution_binning=False, pag_scale=2.0, height=traj.params["height"],
               width=traj.params["width"]).images[0]
    assert traj.params["family"] == "pixart-sigma" and torch.equal(traj[-1].latents, out)
    assert all(step.eps_perturbed is not None and step.pag_scale == 2.0 for step in traj)


def test_the_denoisers_own_processors_come_back_after_a_run_and_after_a_failed_one(pag_pipe):
    before = {name: type(p) for name, p in pag_pipe.unet.attn_processors.items()}

    def fail(traj, step):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here") as caught:
        nbd.trace(pag_pipe, PROMPT, steps=3, guidance=5.0, seed=0, on_step=fail)
    assert len(caught.value.trajectory) == 1
    assert {name: type(p) for name, p in pag_pipe.unet.attn_processors.items()} == before
    nbd.trace(pag_pipe, PROMPT, steps=2, guidance=5.0, seed=0)
    assert {name: type(p) for name, p in pag_pipe.unet.attn_processors.items()} == before


def test_guidance_crossing_1_live_switches_the_batch_layout(pag_pipe):
    crossing = nbd.trace(pag_pipe, PROMPT, steps=4, guidance=[5.0, 5.0, 1.0, 1.0], seed=2)
    assert [step.guided for step in crossing] == [True, True, False, False]
    assert all(step.eps_perturbed is not None for step in crossing)
    guided = nbd.trace(pag_pipe, PROMPT, steps=4, guidance=5.0, seed=2)
    again = nbd.branch(pag_pipe, guided, at=1, guidance=1.0)  # the same steps, the switch made by a branch
    assert torch.equal(again[-1].latents, crossing[-1].latents)


def test_what_if_re_weighs_pag_without_a_model_call(pag_pipe):
    traj = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=5.0, seed=1, pipe_kwargs={"pag_scale": 3.0})
    off = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=5.0, seed=1, pipe_kwargs={"pag_scale": 0.0})
    assert off.params["pag"]["scale"] == 0.0 and off[0].pag_scale == 0.0 and off[0].eps_perturbed is None
    # step 0 saw the same x_t in both runs: PAG re-weighed to 0 there is the run without it
    assert torch.allclose(traj.guided_x0(0, 5.0, pag_scale=0.0), off[0].pred_x0, atol=1e-5)
    assert not torch.allclose(traj[0].pred_x0, off[0].pred_x0, atol=1e-3)
    assert torch.allclose(traj.guided_x0(0, 7.0, pag_scale=0.0), off.guided_x0(0, 7.0), atol=1e-5)
    assert traj.guided_x0(0, 5.0, pag_scale=3.0) is traj[0].pred_x0
    with pytest.raises(ValueError, match="pag_scale: step 0 ran without perturbed-attention guidance"):
        off.guided_x0(0, 5.0, pag_scale=2.0)
    with pytest.raises(ValueError, match="pag_scale must be a number from 0 to 100, got -1"):
        traj.guided_x0(0, 5.0, pag_scale=-1)


def test_branches_replay_pag_and_change_it_from_any_step(pag_pipe, sd_pipe):
    traj = nbd.trace(pag_pipe, PROMPT, steps=4, guidance=5.0, seed=4, scheduler="dpmpp_2m")
    same = nbd.branch(pag_pipe, traj, at=1)  # the replay adds PAG's term as the run did
    assert torch.equal(same[-1].latents, traj[-1].latents)
    off = nbd.branch(pag_pipe, traj, at=1, pag_scale=0.0)
    assert off.params["pag"]["scale"] == 0.0 and [s.pag_scale for s in off][2:] == [0.0, 0.0]
    assert off[2].eps_perturbed is None and not torch.equal(off[-1].latents, traj[-1].latents)
    with pytest.raises(ValueError, match="pag_scale must be a number from 0 to 100"):
        nbd.branch(pag_pipe, traj, at=1, pag_scale=float("nan"))
    plain = nbd.trace(sd_pipe, PROMPT, steps=3, guidance=5.0, seed=0)
    with pytest.raises(ValueError, match="pag_scale: this run was made without perturbed-attention guidance"):
        nbd.branch(sd_pipe, plain, at=0, pag_scale=1.0)
    with pytest.raises(ValueError, match="StableDiffusionPipeline has none: branch with a PAG pipeline"):
        nbd.branch(testing.tiny_sd_pipeline(), traj, at=1)


def test_a_saved_pag_run_keeps_what_re_weighs_and_branches_it(pag_pipe, tmp_path):
    traj = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=4.0, seed=5, pipe_kwargs={"pag_adaptive_scale": 0.002})
    traj.save(tmp_path / "pag.nbd", frames=False)
    loaded = nbd.Trajectory.load(tmp_path / "pag.nbd", pipe=pag_pipe)
    assert loaded.params["pag"] == traj.params["pag"]
    for a, b in zip(traj, loaded):
        assert a.pag_scale == b.pag_scale and torch.equal(a.eps_perturbed, b.eps_perturbed)
    assert torch.equal(loaded.guided_x0(1, 6.0, pag_scale=1.0), traj.guided_x0(1, 6.0, pag_scale=1.0))
    assert torch.equal(nbd.branch(pag_pipe, loaded, at=0)[-1].latents, traj[-1].latents)


def test_bad_pag_values_are_refused_by_name_before_any_model_work(pag_pipe, sd_pipe):
    for value, kind in ((-1.0, ValueError), (float("inf"), ValueError), ("high", TypeError), (True, TypeError)):
        with pytest.raises(kind, match=r"pipe_kwargs\['pag_scale'\] must be a number from 0 to 100"):
            nbd.core.prepare(pag_pipe, PROMPT, steps=2, pipe_kwargs={"pag_scale": value})
    with pytest.raises(ValueError, match=r"pipe_kwargs\['pag_adaptive_scale'\] must be a number from 0 to 1, got 2"):
        nbd.core.prepare(pag_pipe, PROMPT, steps=2, pipe_kwargs={"pag_adaptive_scale": 2})
    with pytest.raises(ValueError, match=r"pipe_kwargs\['pag_scale'\]=2.0: StableDiffusionPipeline runs"):
        nbd.core.prepare(sd_pipe, PROMPT, steps=2, pipe_kwargs={"pag_scale": 2.0})
    pag_pipe.set_pag_applied_layers(["mid", "blocks.9"])
    try:  # diffusers says so at the first step; nbdiffuse before any model work
        with pytest.raises(ValueError, match="pipe.pag_applied_layers: 'blocks.9' matches no self-attention layer of "
                                             "UNet2DConditionModel"):
            nbd.core.prepare(pag_pipe, PROMPT, steps=2)
        nbd.core.prepare(pag_pipe, PROMPT, steps=2, pipe_kwargs={"pag_scale": 0.0})  # no PAG: no layer is used
    finally:
        pag_pipe.set_pag_applied_layers("mid")


@pytest.mark.parametrize("name, plain", [("sd", testing.tiny_sd_pipeline), ("sd3", testing.tiny_sd3_pipeline)])
def test_attention_maps_read_the_prompts_row_not_the_perturbed_one(pags, name, plain):
    """At step 0 both runs see the same x_t, and PAG leaves the prompt's row as it is: the maps are the same
    (the perturbed row's differ by up to 1e-3 on the SD UNet)."""
    pag = nbd.trace(pags[name], PROMPT, steps=1, guidance=5.0, seed=0, height=16, width=16, attention=True)
    without = nbd.trace(plain(), PROMPT, steps=1, guidance=5.0, seed=0, height=16, width=16, attention=True)
    assert torch.equal(pag.attention(0, "red"), without.attention(0, "red"))
    unguided = nbd.trace(pags[name], PROMPT, steps=1, guidance=1.0, seed=0, height=16, width=16, attention=True)
    alone = nbd.trace(plain(), PROMPT, steps=1, guidance=1.0, seed=0, height=16, width=16, attention=True)
    assert torch.equal(unguided.attention(0, "red"), alone.attention(0, "red"))


def test_a_decision_curve_continues_with_the_runs_own_pag(pag_pipe, monkeypatch):
    from nbdiffuse.core import decision
    from nbdiffuse.core.run import Run

    seen = []
    execute = Run.execute
    monkeypatch.setattr(Run, "execute", lambda run: seen.append(run.pag) or execute(run))
    traj = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=4.0, seed=0, pipe_kwargs={"pag_scale": 1.5})
    curve = decision.decision_curve_of(pag_pipe, traj, samples=1, at=[0])
    assert curve.steps == [0] and seen and all(plan.scale == 1.5 and plan.layers == ("mid",) for plan in seen)


def test_pipelines_that_share_a_denoiser_take_turns(pag_pipe):
    """A PAG run sets its processors on the UNet it shares with from_pipe's plain pipeline: one lock for both."""
    from diffusers import StableDiffusionPipeline

    from nbdiffuse.core.locks import pipe_lock

    plain = StableDiffusionPipeline.from_pipe(pag_pipe)
    assert plain.unet is pag_pipe.unet and pipe_lock(plain) is pipe_lock(pag_pipe)
    assert pipe_lock(testing.tiny_sd_pipeline()) is not pipe_lock(pag_pipe)


def test_a_sweep_over_pag_scale_runs_each_cell_as_its_trace(pag_pipe):
    sweep = nbd.sweep(pag_pipe, PROMPT, axes={"pag_scale": [0.0, 2.0]}, steps=3, guidance=4.0, seed=1, progress=False)
    assert [cell.labels["pag_scale"] for cell in sweep.cells] == ["0", "2"]
    for cell, scale in zip(sweep.cells, (0.0, 2.0)):
        same = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=4.0, seed=1, pipe_kwargs={"pag_scale": scale})
        assert cell.run.params["pag"]["scale"] == scale and torch.equal(cell.run[-1].latents, same[-1].latents)
    with pytest.raises(ValueError, match=r"pipe_kwargs\['pag_scale'\] must be a number from 0 to 100"):
        nbd.sweep(pag_pipe, PROMPT, axes={"pag_scale": [1.0, -1.0]}, steps=2, progress=False)


def test_load_pipeline_joins_pag_to_any_pipeline_diffusers_has_a_pag_sibling_for():
    from nbdiffuse.core.sweep import worker_source

    pipe = nbd.load_pipeline(pag="up")  # the embedded model
    assert type(pipe).__name__ == "StableDiffusionPAGPipeline" and pipe.pag_applied_layers == ["up"]
    traj = nbd.trace(pipe, "red, white background", steps=3, guidance=5.0, seed=0, pipe_kwargs={"pag_scale": 2.0})
    own = pipe("red, white background", num_inference_steps=3, guidance_scale=5.0, pag_scale=2.0,
               generator=torch.Generator().manual_seed(0), output_type="latent").images[0]
    assert torch.equal(traj[-1].latents, own) and traj.params["pag"]["layers"] == ["up"]
    assert type(nbd.load_pipeline(controlnet="outline", pag=["mid"])).__name__ == "StableDiffusionControlNetPAGPipeline"
    with pytest.raises(ValueError, match="source is a PAG pipeline .* pass pag=... .* so that workers load it too"):
        worker_source(pipe, {})
    assert worker_source(pipe, {"pag": "up"}) is None  # the embedded model, joined again by each worker
    sweep = nbd.sweep(None, "red, white background", axes={"pag_scale": [0.0, 2.0]}, pag="up", steps=3, guidance=5.0,
                      seed=0, progress=False)
    assert torch.equal(sweep.cells[1].run[-1].latents, own)
    with pytest.raises(TypeError, match="pag must be the layers perturbed-attention guidance perturbs"):
        nbd.load_pipeline(pag=3)
    with pytest.raises(ValueError, match="pag: 'nowhere' matches no self-attention layer of UNet2DConditionModel"):
        nbd.load_pipeline(pag="nowhere")
    with pytest.raises(ValueError, match="pag='mid': FluxPipeline has no PAG pipeline in diffusers"):
        nbd.load_pipeline(testing.tiny_flux_pipeline(), pag="mid")
