"""RunControl: steer a running trace from another thread (a widget, a teacher's cell)."""
from __future__ import annotations

import threading
from typing import Any

from .pag import MAX_PAG_SCALE, check_pag_value
from .validate import check_control_scale, check_guidance_value


class RunControl:
    """Thread-safe switches that the denoising loop reads between steps.

    `set_guidance(w)` takes effect from the next step, as do `set_control_scale(s)` (a ControlNet
    run's control scale: core/controlnet.py) and `set_pag_scale(s)` (a PAG run's: core/pag.py); `stop()` ends the run after the
    current step (the trajectory keeps what was done); `pause()` holds the loop before
    its next step until `resume()`; `step_once()` lets exactly one more step run and
    then holds again, so a teacher can walk through the reverse process.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._guidance: float | None = None
        self._control_scale: float | None = None
        self._pag_scale: float | None = None
        self._stopped = False
        self._paused = False
        self._credits = 0
        self._waiting = False

    # --- switches, called from any thread -------------------------------------------
    def set_guidance(self, guidance: float) -> None:
        value = check_guidance_value(guidance)
        with self._cond:
            self._guidance = value

    def clear_guidance(self) -> None:
        """Go back to the run's own guidance schedule from the next step."""
        with self._cond:
            self._guidance = None

    def set_control_scale(self, scale: Any) -> None:
        """A ControlNet run's control scale from the next step (0: no control; inside its start/end window):
        one number for every ControlNet, or (several ControlNets) a list or tuple of one per ControlNet."""
        if isinstance(scale, (list, tuple)):
            value: Any = tuple(check_control_scale(v, f"control_scale[{j}]") for j, v in enumerate(scale))
        else:
            value = check_control_scale(scale)
        with self._cond:
            self._control_scale = value

    def clear_control_scale(self) -> None:
        """Go back to the run's own control_scale schedule from the next step."""
        with self._cond:
            self._control_scale = None

    def set_pag_scale(self, scale: Any) -> None:
        """A PAG pipeline's run's pag_scale from the next step (0: no perturbed-attention guidance; a run that
        started at 0 starts perturbing its layers then). Its pag_adaptive_scale still lowers it as t falls."""
        value = check_pag_value("pag_scale", scale, MAX_PAG_SCALE)
        with self._cond:
            self._pag_scale = value

    def clear_pag_scale(self) -> None:
        """Go back to the run's own pag_scale from the next step."""
        with self._cond:
            self._pag_scale = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._credits = 0
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._credits = 0
            self._waiting = False  # the loop is released: a later wait_until_waiting waits for the next hold
            self._cond.notify_all()

    def step_once(self) -> None:
        """Run one more step, then hold (pauses a running loop after its next step)."""
        with self._cond:
            self._paused = True
            self._credits += 1
            self._waiting = False
            self._cond.notify_all()

    # --- state ----------------------------------------------------------------------
    @property
    def guidance(self) -> float | None:
        """The live guidance override, or None when the run follows its schedule."""
        with self._cond:
            return self._guidance

    @property
    def control_scale(self) -> Any:
        """The live control scale override, or None when the run follows its schedule."""
        with self._cond:
            return self._control_scale

    @property
    def pag_scale(self) -> float | None:
        """The live pag_scale override, or None when the run follows its own."""
        with self._cond:
            return self._pag_scale

    @property
    def stopped(self) -> bool:
        with self._cond:
            return self._stopped

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused

    @property
    def waiting(self) -> bool:
        """True while the loop is held by pause() before its next step."""
        with self._cond:
            return self._waiting

    def wait_until_waiting(self, timeout: float | None = None) -> bool:
        """Block until the loop is held by pause (for tests and scripted lessons)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting or self._stopped, timeout)

    # --- the loop's side --------------------------------------------------------------
    def _wait_turn(self) -> bool:
        """Called by the loop before each step. False means: stop now."""
        with self._cond:
            try:
                while self._paused and self._credits == 0 and not self._stopped:
                    if not self._waiting:
                        self._waiting = True
                        self._cond.notify_all()
                    # A short timeout keeps a main-thread run interruptible (Ctrl-C).
                    self._cond.wait(0.1)
            finally:
                if self._waiting:
                    self._waiting = False
                    self._cond.notify_all()
            if self._stopped:
                return False
            if self._paused:
                self._credits -= 1
            return True

    def __repr__(self) -> str:
        return (f"RunControl(guidance={self._guidance}, paused={self._paused}, "
                f"stopped={self._stopped})")
