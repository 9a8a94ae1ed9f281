"""PAG changed while a run goes (RunControl.set_pag_scale, core/pag.py): the next step uses it, the run records the
pag_scale each step asked, and a branch or decision curve replays those steps exactly."""
import pytest
import torch

import nbdiffuse as nbd
from nbdiffuse.core.control import RunControl

PROMPT = "a red circle"


def live(pipe, scale, change_after, to, steps=4, adaptive=0.0, **kw):
    """A traced run whose pag_scale is set to `to` from the step after `change_after` (as the Explorer's slider)."""
    control = RunControl()

    def on_step(traj, step):
        if step.index == change_after:
            control.set_pag_scale(to)

    return nbd.trace(pipe, PROMPT, steps=steps, guidance=5.0, seed=6, control=control, on_step=on_step,
                     pipe_kwargs={"pag_scale": scale, "pag_adaptive_scale": adaptive}, **kw)


def test_a_live_pag_change_steers_the_next_step_as_a_branch_from_there_would(pag_pipe):
    plain = nbd.trace(pag_pipe, PROMPT, steps=4, guidance=5.0, seed=6, pipe_kwargs={"pag_scale": 3.0})
    steered = live(pag_pipe, 3.0, change_after=1, to=0.5)
    assert steered.params["pag"]["scales"] == [3.0, 3.0, 0.5, 0.5] and steered.params["pag"]["scale"] == 3.0
    assert [s.pag_scale for s in steered] == [3.0, 3.0, 0.5, 0.5]
    assert torch.equal(steered[1].latents, plain[1].latents)
    assert torch.equal(steered[-1].latents, nbd.branch(pag_pipe, plain, at=1, pag_scale=0.5)[-1].latents)
    for at in (0, 2):  # with no change a branch replays the steps as they were asked, the live change included
        again = nbd.branch(pag_pipe, steered, at=at)
        assert torch.equal(again[-1].latents, steered[-1].latents)
        assert again.params["pag"]["scales"] == [3.0, 3.0, 0.5, 0.5]


def test_turned_off_live_it_skips_the_perturbed_row_and_turned_on_it_starts_perturbing(pag_pipe):
    before = {name: type(p) for name, p in pag_pipe.unet.attn_processors.items()}
    off = live(pag_pipe, 2.0, change_after=0, to=0.0, steps=3)
    assert [s.eps_perturbed is None for s in off] == [False, True, True]
    assert {name: type(p) for name, p in pag_pipe.unet.attn_processors.items()} == before
    plain = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=5.0, seed=6, pipe_kwargs={"pag_scale": 2.0})
    assert torch.equal(off[-1].latents, nbd.branch(pag_pipe, plain, at=0, pag_scale=0.0)[-1].latents)

    on = live(pag_pipe, 0.0, change_after=0, to=2.0, steps=3)  # a run begun without PAG
    assert [s.pag_scale for s in on] == [0.0, 2.0, 2.0] and on[0].eps_perturbed is None
    none = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=5.0, seed=6, pipe_kwargs={"pag_scale": 0.0})
    assert torch.equal(on[-1].latents, nbd.branch(pag_pipe, none, at=0, pag_scale=2.0)[-1].latents)
    assert torch.equal(nbd.branch(pag_pipe, on, at=0)[-1].latents, on[-1].latents)
    assert {name: type(p) for name, p in pag_pipe.unet.attn_processors.items()} == before


def test_an_adaptive_run_lowers_a_live_scale_as_it_lowers_its_own(pag_pipe):
    steered = live(pag_pipe, 3.0, change_after=0, to=5.0, steps=3, adaptive=0.001)
    for step, asked in zip(steered, (3.0, 5.0, 5.0)):  # diffusers' _get_pag_scale, on the scale asked
        assert step.pag_scale == pytest.approx(max(0.0, asked - 0.001 * (1000 - step.timestep)), abs=1e-5)
    adaptive = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=5.0, seed=6,
                         pipe_kwargs={"pag_scale": 3.0, "pag_adaptive_scale": 0.001})
    assert torch.equal(steered[-1].latents, nbd.branch(pag_pipe, adaptive, at=0, pag_scale=5.0)[-1].latents)


def test_a_decision_curve_continues_with_the_pag_each_step_asked(pag_pipe, monkeypatch):
    from nbdiffuse.core import decision
    from nbdiffuse.core.run import Run

    seen = []
    execute = Run.execute
    monkeypatch.setattr(Run, "execute", lambda run: seen.append(run.pag.scales) or execute(run))
    steered = live(pag_pipe, 3.0, change_after=1, to=1.0)
    decision.decision_curve_of(pag_pipe, steered, samples=1, at=[0, 2])
    assert seen[1:] == [(3.0, 1.0, 1.0), (1.0,)]  # after the run itself: from step 1 on, then from step 3 on


def test_a_file_from_before_live_pag_replays_its_one_scale_and_a_bad_scales_field_is_refused(pag_pipe, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from nbdiffuse.core.nbd_schema import TrajectoryFileError

    traj = nbd.trace(pag_pipe, PROMPT, steps=3, guidance=4.0, seed=5, pipe_kwargs={"pag_scale": 2.0})
    path = tmp_path / "pag.nbd"
    traj.save(path, frames=False)
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    assert header["format_version"] == "4"  # readers before 4 know no perturbed predictions: refused as newer
    tensors, meta = load_file(str(path)), json.loads(header["meta"])
    del meta["params"]["pag"]["scales"]  # as files were written before live PAG
    save_file(tensors, str(tmp_path / "older.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    older = nbd.Trajectory.load(tmp_path / "older.nbd", pipe=pag_pipe)
    assert torch.equal(nbd.branch(pag_pipe, older, at=0)[-1].latents, traj[-1].latents)
    meta["params"]["pag"]["scales"] = [2.0, -1.0, 2.0]
    save_file(tensors, str(tmp_path / "bad.nbd"), metadata=dict(header, meta=json.dumps(meta)))
    with pytest.raises(TrajectoryFileError, match=r"params\.pag\.scales\[1\] must be a number from 0 to 100"):
        nbd.Trajectory.load(tmp_path / "bad.nbd")


def test_a_bad_live_pag_scale_is_refused_by_name_and_the_run_keeps_its_own():
    control = RunControl()
    for value, kind in ((-1.0, ValueError), (float("nan"), ValueError), ("high", TypeError)):
        with pytest.raises(kind, match="pag_scale"):
            control.set_pag_scale(value)
    assert control.pag_scale is None
    control.set_pag_scale(2)
    assert control.pag_scale == 2.0
    control.clear_pag_scale()
    assert control.pag_scale is None


def test_a_pipeline_that_runs_its_own_loop_notes_a_live_pag_scale_as_ignored():
    from diffusers import HunyuanDiTPAGPipeline

    from nbdiffuse.testing import tiny_hunyuan_dit_pipeline

    pipe = HunyuanDiTPAGPipeline(**tiny_hunyuan_dit_pipeline().components, pag_applied_layers="blocks.1",
                                  requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    control = RunControl()
    control.set_pag_scale(0.0)
    traj = nbd.trace(pipe, PROMPT, steps=2, guidance=5.0, seed=0, control=control)
    assert any(n.startswith("live PAG scale ignored: This pipeline (HunyuanDiTPAGPipeline)") for n in traj.notices), traj.notices
