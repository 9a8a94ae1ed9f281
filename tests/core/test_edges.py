"""core/edges.py: an edge map of any picture, white lines on black, with no model."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from nbdiffuse.core.edges import edge_map, looks_like_lines


def _square(colour=(229, 57, 53), ground=(67, 160, 71)):
    picture = Image.new("RGB", (64, 64), ground)
    ImageDraw.Draw(picture).rectangle((20, 24, 43, 47), fill=colour)
    return picture


def test_edges_trace_the_shape_where_it_is():
    edges = np.asarray(edge_map(_square()))
    assert edges.shape == (64, 64, 3)
    lit = edges[..., 0] > 127
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 0] == edges[..., 2]).all()  # grey lines
    assert lit[24, 30] or lit[23, 30]  # the top edge of the square
    assert lit[35, 20] or lit[35, 19]  # its left edge
    assert not lit[35, 31]  # its flat inside
    assert not lit[5, 5]  # the flat ground far from it
    ys, xs = np.nonzero(lit)
    assert 17 <= xs.min() <= 21 and 42 <= xs.max() <= 45 and 21 <= ys.min() <= 25 and 46 <= ys.max() <= 49


def test_an_edge_of_colour_alone_is_found():
    # red on green of about the same brightness: a grey conversion would lose it, the channels do not
    assert np.asarray(edge_map(_square((160, 40, 40), (40, 110, 40))))[..., 0].max() == 255


def test_width_thickens_the_lines_and_flat_pictures_have_none():
    thin = (np.asarray(edge_map(_square()))[..., 0] > 0).sum()
    thick = (np.asarray(edge_map(_square(), width=3))[..., 0] > 0).sum()
    assert thick > 1.5 * thin
    assert np.asarray(edge_map(Image.new("RGB", (32, 32), (10, 200, 30)))).max() == 0


def test_an_edge_map_looks_like_lines_and_a_picture_does_not():
    assert looks_like_lines(edge_map(_square()))
    assert not looks_like_lines(_square())
    assert not looks_like_lines(Image.new("RGB", (32, 32), "white"))


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(image="no such file.png"), (ValueError, FileNotFoundError, OSError), "image"),
    (dict(image=42), TypeError, "image"),
    (dict(threshold=1.5), ValueError, "threshold"),
    (dict(threshold="high"), TypeError, "threshold"),
    (dict(width=0), ValueError, "width"),
    (dict(width=2.5), ValueError, "width"),
])
def test_bad_input_is_named(kwargs, error, words):
    args = {"image": _square(), **kwargs}
    with pytest.raises(error, match=words):
        edge_map(**args)
