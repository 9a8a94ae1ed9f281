"""A decision curve drawn with PIL: lines where the values say, a legend, the 'decided here' mark, both themes."""
import numpy as np
import pytest

import nbdiffuse as nbd
from nbdiffuse.core.decision import DecisionCurve
from nbdiffuse.core.decision_plot import LINE_COLOURS, MARGIN, THEMES


@pytest.fixture(scope="module")
def curve(sd_pipe):
    traj = nbd.trace(sd_pipe, "a red circle", steps=11, guidance=4.0, seed=0)
    keep = {"color": [0.0, 0.5, 1.0, 1.0], "shape": [1.0, 1.0, 1.0, 1.0]}
    return DecisionCurve(steps=[0, 3, 6, 9], keep=keep, samples=2, trajectory=traj)


def hex_rgb(colour):
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def near(picture, x, y, colour, radius=2):
    patch = picture[y - radius: y + radius + 1, x - radius: x + radius + 1].reshape(-1, 3)
    return bool((np.abs(patch.astype(int) - hex_rgb(colour)).sum(1) < 30).any())


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_lines_go_where_the_values_are(curve, theme):
    picture = np.asarray(curve.plot(width=400, height=200, theme=theme))
    assert picture.shape == (200, 400, 3)
    assert tuple(picture[1, 1]) == hex_rgb(THEMES[theme]["page"])
    x0, y0, x1, y1 = MARGIN["left"], MARGIN["top"], 400 - MARGIN["right"], 200 - MARGIN["bottom"]

    def at(step, share):
        return round(x0 + (x1 - x0) * step / 10), round(y1 - (y1 - y0) * share)

    colour, shape = LINE_COLOURS[0], LINE_COLOURS[1]
    assert near(picture, *at(0, 0.0), colour) and near(picture, *at(3, 0.5), colour)
    assert near(picture, *at(3, 1.0), shape) and not near(picture, *at(3, 0.0), shape)
    assert curve.decided("color") == 6
    x = at(6, 0)[0]  # the dashed mark: ink down the column of step 6
    ink = hex_rgb(THEMES[theme]["ink"])
    column = picture[y0 + 20: y1 - 20, x - 1: x + 2].reshape(-1, 3).astype(int)
    assert (np.abs(column - ink).sum(1) < 30).sum() >= 10
    assert not np.array_equal(picture, np.asarray(curve.plot(width=400, height=200, theme=theme, mark=None)))


@pytest.mark.parametrize("kwargs, match", [(dict(theme="blue"), "theme must be one of light, dark"),
                                           (dict(width=10), "width must be an int from 160 to 4096")])
def test_bad_plot_arguments_are_refused(curve, kwargs, match):
    with pytest.raises(ValueError, match=match):
        curve.plot(**kwargs)
