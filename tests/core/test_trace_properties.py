"""Property: whatever trace() is given, it returns a valid trajectory or raises ValueError/TypeError."""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbdiffuse as nbd

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-5, 20),
                    st.none(), st.text(max_size=3), st.booleans())
guidance = st.one_of(numbers, st.lists(st.floats(-2, 15, width=32), min_size=0, max_size=4))
sizes = st.one_of(st.none(), st.integers(-8, 40), st.floats(0, 40, width=32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.one_of(st.integers(-2, 3), st.floats(0, 3, width=32), st.none(), st.text(max_size=2)),
       guidance=guidance, seed=st.one_of(st.integers(-3, 2**64), st.none(), st.floats(0, 3, width=32)),
       height=sizes, width=sizes,
       scheduler=st.one_of(st.none(), st.sampled_from(nbd.schedulers()), st.text(max_size=4)),
       prompt=st.one_of(st.text(max_size=20), st.none(), st.integers()))
def test_trace_returns_a_trajectory_or_a_clear_error(sd_pipe, steps, guidance, seed, height, width, scheduler,
                                                      prompt):
    try:
        traj = nbd.trace(sd_pipe, prompt, steps=steps, guidance=guidance, seed=seed, height=height, width=width,
                         scheduler=scheduler)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert any(name in message for name in ("steps", "guidance", "seed", "height", "width", "scheduler",
                                                 "prompt")), message
        return
    assert len(traj) == steps and not traj.stopped
    assert all(math.isfinite(g) and g >= 0 for g in traj.guidances)
    assert traj.final_latents.shape[1:] == ((height or 16) // 2, (width or 16) // 2)
