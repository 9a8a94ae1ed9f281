"""Faults during a run: each leaves no hung thread, no deadlock, a clear state, and the next run works.

A real Explorer over the tiny real pipeline (nbdiffuse.testing), with a HeadlessFrontend in the
browser's place (it keeps the state the browser would show and acks frames as explorer.js does).
Faults are injected by wrapping the real UNet's forward. Every wait has a timeout; nothing is
asserted about time. The `explorer` fixture fails a test that leaves any thread behind.
"""
from __future__ import annotations

import gc
import os
import signal
import textwrap
import threading
import weakref

import pytest

from nbdiffuse.widgets import Explorer, runner as runner_module
from nbdiffuse.widgets.headless import HeadlessFrontend
from reliability_helpers import WAIT, new_threads, started, wait_for

LONG = 1000  # steps (the most allowed): a run surely still going when the fault comes; always cut short
TERMINAL = ("done", "stopped", "error")  # states in which the browser offers Generate again


def run_threads():
    return [th for th in threading.enumerate() if th.name.startswith("nbdiffuse-run") and th.is_alive()]


def assert_settled(ex, fe):
    """No run going or waiting, the browser shows a finished state: its controls are back."""
    assert ex.wait(WAIT), "the run did not end"
    assert not ex.running and ex._runner.current is None
    assert fe.state["status"] in TERMINAL and fe.state["status"] == ex.status
    assert len(run_threads()) <= 1


def assert_next_run_works(ex, fe, steps=4, background=True):
    ex.generate(prompt="the run after the fault", steps=steps, background=background)
    assert ex.wait(WAIT)
    assert fe.state["status"] == "done" and fe.state["error"] == "", fe.state["error"]
    assert fe.state["n_steps"] == steps and len(fe.state["frames_x0"]) == steps
    assert fe.state["run_id"] == ex.run_id and fe.state["shown_run"] == ex.trajectory.id
    traj = ex.trajectory
    assert traj.params["prompt"] == "the run after the fault" and len(traj) == steps and not traj.stopped


def assert_another_explorer_runs(pipe):
    """The model is free: another Explorer on the same pipeline generates at once."""
    other = Explorer(pipe, steps=8)
    other_fe = HeadlessFrontend(other)
    try:
        assert_next_run_works(other, other_fe)
    finally:
        other.close()
        other_fe.close()


def test_stop_mid_run_from_the_browser_and_from_python(explorer):
    ex, fe = explorer(steps=8)
    for stop in (lambda: fe.click("stop"), ex.stop):
        ex.generate(steps=LONG)
        wait_for(started(ex, 3), what="three steps")
        stop()
        assert_settled(ex, fe)
        traj = ex.trajectory
        assert fe.state["status"] == "stopped" and traj.stopped and 3 <= len(traj) < LONG
        # Every step done is kept and shown: frames for the scrubber, the full-VAE frame of the last one.
        assert fe.state["n_steps"] == len(traj) == len(fe.state["frames_x0"]) == len(fe.state["frames_xt"])
        assert f"{len(traj) - 1}:x0" in fe.state["full_frames"] and fe.state["error"] == ""
    ex.stop()  # stopping with nothing running does nothing
    fe.click("stop")
    assert ex.status == "stopped"
    assert_next_run_works(ex, fe)


def test_generate_clicked_20_times_within_a_second_never_races_and_the_last_wins(explorer, pipe, overlap_watch):
    ex, fe = explorer(steps=40)
    most_run_threads = [0]

    def count_run_threads():
        most_run_threads[0] = max(most_run_threads[0], len(run_threads()))

    with overlap_watch(pipe.unet, on_enter=count_run_threads) as watch:
        for i in range(20):  # as fast as the browser can send them: each click carries the controls
            fe.set(prompt=f"click {i}", seed=i)
            fe.click("generate")
        assert ex.wait(WAIT)
    assert not watch.overlaps, f"two runs called the model at once: {watch.overlaps}"
    assert most_run_threads[0] == 1
    assert 1 <= len(ex.history) <= 20
    last = ex.trajectory
    assert last.params["prompt"] == "click 19" and last.params["seed"] == 19
    assert len(last) == 40 and not last.stopped
    assert all(traj.stopped for traj in ex.history[:-1]), "every replaced run stops (and keeps its steps)"
    assert fe.state["status"] == "done" and fe.state["prompt"] == "click 19" and fe.state["n_steps"] == 40
    assert fe.state["shown_run"] == last.id and fe.state["error"] == ""
    assert_settled(ex, fe)
    assert_next_run_works(ex, fe)


def test_keyboard_interrupt_in_the_run_thread(explorer, unet_fault):
    # A real Ctrl-C reaches only the kernel's main thread; a KeyboardInterrupt inside the worker
    # (an on_step hook, an async exception) must still end just that run, as a stop.
    ex, fe = explorer(steps=8)

    def interrupt():
        raise KeyboardInterrupt

    fault = unet_fault(3, interrupt)
    ex.generate(steps=LONG)
    assert fault.fired.wait(WAIT)
    assert_settled(ex, fe)
    traj = ex.trajectory
    assert fe.state["status"] == "stopped" and fe.state["error"] == ""
    assert traj.stopped and len(traj) == 2 and "KeyboardInterrupt" in traj.error
    assert fe.state["n_steps"] == 2 and len(fe.state["frames_x0"]) == 2
    assert_next_run_works(ex, fe)


def test_keyboard_interrupt_during_a_foreground_run(explorer, unet_fault):
    # background=False runs in the cell (Colab): the interrupt propagates to the cell, as any
    # Ctrl-C does, and leaves the widget stopped with the steps done; the next runs work.
    ex, fe = explorer(steps=8)

    def interrupt():
        raise KeyboardInterrupt

    unet_fault(4, interrupt)
    with pytest.raises(KeyboardInterrupt):
        ex.generate(steps=LONG, background=False)
    assert_settled(ex, fe)
    assert fe.state["status"] == "stopped" and fe.state["error"] == "" and fe.state["n_steps"] == 3
    assert ex.trajectory.stopped and len(ex.trajectory) == 3
    assert_next_run_works(ex, fe, background=False)
    assert_next_run_works(ex, fe, background=True)


def test_real_sigint_during_a_foreground_run(explorer, pipe):
    # What Jupyter's "Interrupt kernel" does: SIGINT to the kernel process, so Python raises
    # KeyboardInterrupt in the main thread wherever it happens to be. Sent from another thread
    # once the run is going; the handler only raises while the run is armed (never into pytest).
    ex, fe = explorer(steps=8)
    armed = threading.Event()
    delivered = threading.Event()

    def on_sigint(signum, frame):
        if armed.is_set():
            armed.clear()
            delivered.set()
            raise KeyboardInterrupt

    def send_when_running():
        wait_for(started(ex, 3), what="three steps")
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    sender = threading.Thread(target=send_when_running, name="test-sigint", daemon=True)
    try:
        armed.set()
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            ex.generate(steps=LONG, background=False)
    finally:
        armed.clear()
        signal.signal(signal.SIGINT, previous)
        sender.join(WAIT)
    assert delivered.is_set() and not sender.is_alive()
    assert_settled(ex, fe)
    traj = ex.trajectory
    assert fe.state["status"] == "stopped" and traj.stopped and 3 <= len(traj) < LONG
    assert fe.state["n_steps"] == len(traj)
    assert_next_run_works(ex, fe)


def test_an_exception_inside_the_model_shows_plain_words_and_the_next_run_works(explorer, unet_fault):
    ex, fe = explorer(steps=8)

    def explode():
        raise RuntimeError("injected fault in the UNet")

    unet_fault(3, explode)  # once: the third model call, i.e. step 3
    ex.generate(steps=40)
    assert_settled(ex, fe)
    assert fe.state["status"] == "error"
    assert fe.state["error"] == "The run failed at step 3 of 40: RuntimeError: injected fault in the UNet"
    assert "Traceback" in fe.state["error_details"] and "injected fault" in fe.state["error_details"]
    traj = ex.trajectory  # what was done is kept, shown and in the history
    assert traj.stopped and len(traj) == 2 and "injected fault" in traj.error and traj in ex.history
    assert fe.state["n_steps"] == 2 and len(fe.state["frames_x0"]) == 2
    assert_next_run_works(ex, fe)


def test_widget_closed_mid_run_leaves_no_thread_and_frees_the_model(pipe):
    before = set(threading.enumerate())
    ex = Explorer(pipe, steps=8)
    fe = HeadlessFrontend(ex)
    ex.generate(steps=LONG)
    wait_for(started(ex, 3), what="three steps")
    ex.pause()  # a decode job waits for the pause: it too must end
    ex.close()
    fe.close()
    assert new_threads(before) == []
    traj = ex.trajectory
    assert traj.stopped and 3 <= len(traj) < LONG
    with pytest.raises(RuntimeError, match="closed"):
        ex.generate()
    ex.close()  # a second close does nothing
    # The pipeline lock was let go: another Explorer on the same model runs at once.
    assert_another_explorer_runs(pipe)
    assert new_threads(before) == []


def test_browser_tab_closed_mid_run(explorer):
    # Closing the tab tells the kernel nothing: the comm stays open, acks just stop coming.
    # The pacer then counts unacknowledged frames as lost after ACK_TIMEOUT and goes on.
    ex, fe = explorer(steps=8)
    ex.generate(steps=60)
    wait_for(started(ex, 3), what="three steps")
    fe.ack = False
    assert_settled(ex, fe)
    assert fe.state["status"] == "done" and fe.state["n_steps"] == 60 and len(fe.state["frames_x0"]) == 60
    fe.ack = True  # the tab is open again (a reload): acks flow, runs stream as before
    assert_next_run_works(ex, fe)


def test_front_end_gone_and_explorer_dropped_mid_run(pipe, monkeypatch):
    """In-process part of a kernel restart, as the kernel sees it: the front end is gone mid-run.

    Modelled: every message from the kernel goes nowhere and no ack comes back (the browser's
    models were disposed), and the user's last reference to the Explorer is dropped mid-run
    (`ex = nbd.Explorer()` run again). ipywidgets keeps every open widget in its registry, so
    the Explorer is not collected then: the run ends on its own, frees the model, and the worker
    thread ends once idle (runner.IDLE_SECONDS, shortened here). The kernel process's part of a
    restart is test_kernel_restart_mid_run_lets_the_kernel_exit_by_itself.
    """
    monkeypatch.setattr(runner_module, "IDLE_SECONDS", 0.3)
    before = set(threading.enumerate())
    ex = Explorer(pipe, steps=8)
    fe = HeadlessFrontend(ex, ack=False)
    ex.generate(steps=60)
    wait_for(started(ex, 3), what="three steps")
    lost = []
    fe.receive = lambda data, buffers: lost.append(data)  # the comm leads nowhere now
    ref = weakref.ref(ex)
    worker = ex._runner.thread
    del ex, fe
    assert worker is not None
    worker.join(WAIT)
    assert not worker.is_alive(), "the worker thread of a dropped Explorer must end once its run is over"
    old = ref()
    assert old is not None and old.status == "done" and len(old.trajectory) == 60 and lost
    # The model is free: a new Explorer (the cell run again) generates at once.
    assert_another_explorer_runs(pipe)
    old.close()
    assert new_threads(before) == []


def test_a_closed_explorer_is_garbage(pipe):
    # Not a fault of a run, a leak across re-created widgets: anywidget keeps every widget whose
    # _esm is a file path alive (manzt/anywidget#929), so the widgets pass their front end as text.
    # Otherwise each Explorer made and closed in a kernel would keep its runs for the kernel's life.
    ex = Explorer(pipe, steps=8)
    ex.generate(steps=2)
    assert ex.wait(WAIT)
    ex.close()
    ref = weakref.ref(ex)
    del ex
    gc.collect()
    assert ref() is None


KERNEL_CODE = textwrap.dedent("""
    import threading, torch
    torch.set_num_threads(1)
    from nbdiffuse.testing import tiny_sd_pipeline
    from nbdiffuse.widgets import Explorer

    def wait_for(cond):
        for _ in range(12000):
            if cond():
                return
            threading.Event().wait(0.01)
        raise RuntimeError("timed out")

    pipe, other = tiny_sd_pipeline(), tiny_sd_pipeline(seed=1)
    running, queued, paused = Explorer(pipe, steps=8), Explorer(pipe, steps=8), Explorer(other, steps=8)
    running.generate(steps=1000)
    paused.generate(steps=1000)
    wait_for(lambda: running.trajectory is not None and len(running.trajectory) >= 3)
    queued.generate(steps=1000)  # waits for the model's lock, which `running` holds
    wait_for(lambda: paused.trajectory is not None and len(paused.trajectory) >= 2)
    paused.pause()
    wait_for(lambda: paused.status == "paused")
    print("mid-run", running.status, queued.running, paused.status)
""")


def test_kernel_restart_mid_run_lets_the_kernel_exit_by_itself(tmp_path):
    """The kernel's part of a restart: a real ipykernel gets a restart request while runs go on.

    Three Explorers in the kernel: one running, one waiting for the same model's lock, one
    paused. Jupyter asks the kernel to shut down (restart=True) and kills it if it has not
    exited after a few seconds. Here we wait (up to WAIT) and require that it exited by itself
    with status 0: no thread of ours kept it alive, and no run thread still inside torch when
    Python finalized (that aborts the process: "terminate called without an active exception").
    """
    from jupyter_client import KernelManager

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=WAIT)
        out = []
        reply = kc.execute_interactive(KERNEL_CODE, timeout=WAIT,
                                       output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "mid-run running True paused" in "".join(out), out
        process = km.provisioner.process
        km.request_shutdown(restart=True)
        returncode = process.wait(WAIT)
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
        km.cleanup_resources()
    assert returncode == 0, f"the kernel ended with {returncode} (-6: aborted by a run thread inside torch)"


def test_a_run_waiting_for_a_model_another_run_holds_stops_at_once(explorer, pipe):
    """Explorer A pauses a run (it holds the model until it goes on); B's run waits behind it. Stopping B,
    from Python or the browser, ends B's run at once with no step made; closing B is quick; A goes on."""
    a, a_fe = explorer(steps=8)
    b, b_fe = explorer(steps=8)
    a.generate(steps=LONG)
    wait_for(started(a, 2), what="two steps of A")
    a.pause()
    for stop in (b.stop, lambda: b_fe.click("stop")):
        b.generate(prompt="waits for the model")
        wait_for(lambda: b.status == "running", what="B's run to start waiting")
        stop()
        assert b.wait(5), "a run waiting for the model must stop when asked"
        assert b.status == "stopped" and b.trajectory is not None and len(b.trajectory) == 0
        assert b.trajectory.stopped and b_fe.state["status"] == "stopped"
    b.generate(prompt="waits again")
    wait_for(lambda: b.status == "running", what="B's second run to start waiting")
    closing = threading.Thread(target=b.close)
    closing.start()
    closing.join(5)
    assert not closing.is_alive(), "closing an Explorer whose run waits for the model must not wait for the model"
    a.resume()
    a.stop()
    assert_settled(a, a_fe)
    assert_next_run_works(a, a_fe)
