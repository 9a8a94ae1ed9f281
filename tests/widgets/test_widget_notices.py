"""What a run changed about its input (traj.notices) shows in the Explorer: live runs, loaded runs, branches."""
from __future__ import annotations

from polling import started

from nbdiffuse.widgets import Explorer
from nbdiffuse.widgets.headless import HeadlessFrontend

LONG = "red circle " * 20  # 182 tokens for the tiny tokenizer, which reads 77


def test_a_truncated_prompt_is_said_from_the_runs_start_to_its_end(explorer, wait_for):
    ex, fe = explorer
    ex.generate(prompt=LONG, steps=300)
    wait_for(started(ex, 1), what="the first step")
    said = fe.state["notices"]
    assert fe.state["status"] == "running" and any("truncated" in n and "reads 77" in n for n in said), said
    ex.stop()
    assert ex.wait(120)
    assert fe.state["notices"] == ex.trajectory.notices and fe.state["notices"]
    ex.generate(prompt="red circle", steps=2)  # a run with nothing to say clears the line
    assert ex.wait(120) and fe.state["notices"] == [] and ex.trajectory.notices == []


def test_loaded_runs_and_saved_files_bring_their_notices(explorer, pipe, tmp_path):
    ex, fe = explorer
    ex.generate(prompt=LONG, steps=2)
    assert ex.wait(120)
    ex.generate(prompt="red circle", steps=2)
    assert ex.wait(120) and fe.state["notices"] == []
    ex.load_run(0)
    assert fe.state["notices"] == ex.history[0].notices and "truncated" in fe.state["notices"][0]
    ex.history[0].save(tmp_path / "long.nbd")
    shown = Explorer.from_files([tmp_path / "long.nbd"])  # workshop mode: the notices come from the file
    try:
        assert HeadlessFrontend(shown).state["notices"] == ex.history[0].notices
    finally:
        shown.close()


def test_a_branch_says_which_words_the_model_dropped(explorer, pipe, monkeypatch, wait_for):
    monkeypatch.setattr(pipe, "_nbd_shapes", True, raising=False)  # the shapes world's grammar, on the tiny model
    ex, fe = explorer
    ex.generate(prompt="big red circle", steps=6)
    assert ex.wait(120) and fe.state["notices"] == []
    ex.branch(at=2, prompt="a cute purple dragon circle", steps=300)
    unknown = "prompt: unknown words ignored: cute, dragon (see nbd.shapes.VOCABULARY)"
    status = wait_for(lambda: fe.state["notices"] == [unknown] and fe.state["status"], what="the branch's notice")
    assert status == "running"  # said from the branch's start, not only once it ends
    ex.stop()
    assert ex.wait(120) and fe.state["notices"] == [unknown] == ex.trajectory.notices
