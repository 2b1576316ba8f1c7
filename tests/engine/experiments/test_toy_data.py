"""The 2-D toys, the drawn polyline and the digits: shapes, ranges, seeds and their geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from engine.experiments.toy_data import (
    BOX,
    DRAWN_NOISE,
    TOY_SAMPLERS,
    digits,
    parse_points,
    polyline,
    toy,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(TOY_SAMPLERS))
def test_toys_are_seeded_2d_and_inside_the_drawing_box(name):
    x = toy(name, 5000, gen(1))
    assert x.shape == (5000, 2) and x.dtype == torch.float64
    assert x.abs().max() < BOX
    assert float(x.std(dim=0).min()) > 0.3 and float(x.std(dim=0).max()) < 1.5
    torch.testing.assert_close(toy(name, 5000, gen(1)), x, rtol=0, atol=0)
    assert not torch.equal(toy(name, 5000, gen(2)), x)


def test_ring_and_gaussians_have_their_geometry():
    r = toy("ring", 20_000, gen(0)).norm(dim=1)
    assert abs(float(r.mean()) - 1.5) < 0.01 and abs(float(r.std()) - 0.08) < 0.01
    x = toy("gaussians", 16_000, gen(0))
    angle = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.round(angle / (2 * math.pi / 8)) % 8
    counts = torch.bincount(mode.long(), minlength=8).double()
    assert (abs(counts / len(x) - 1 / 8) < 0.015).all()  # equal weights, ~4 SE
    centres = 1.6 * torch.stack([torch.cos(mode * math.pi / 4), torch.sin(mode * math.pi / 4)], 1)
    assert abs(float((x - centres).std()) - 0.12) < 0.01


def test_parse_points():
    np.testing.assert_array_equal(parse_points(" 1,2; -0.5,3 ;1e-3,-2.999"),
                                  [[1, 2], [-0.5, 3], [0.001, -2.999]])
    assert parse_points("").shape == (0, 2)
    with pytest.raises(ValueError, match="point 2 is '1'"):
        parse_points("0,0;1")
    with pytest.raises(ValueError, match="point 1 is 'a,b'"):
        parse_points("a,b")
    with pytest.raises(ValueError, match="outside"):
        parse_points("0,0;3.5,0")
    with pytest.raises(ValueError, match="outside"):
        parse_points("nan,0")


def distance_to_polyline(x: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest of dense points along the polyline."""
    dense = np.concatenate([np.linspace(a, b, 2000) for a, b in zip(vertices[:-1], vertices[1:],
                                                                     strict=True)])
    return cdist(x, dense).min(axis=1)


def test_polyline_samples_lie_along_the_drawn_line_uniformly_by_length():
    vertices = np.array([[-2.0, -1.0], [0.0, 1.0], [2.0, -1.0], [2.0, 2.0]])
    x = polyline(vertices, 20_000, gen(3)).numpy()
    d = distance_to_polyline(x, vertices)
    # Isotropic 2-D noise of std σ puts the distance to a line at |N(0, σ²)|: mean σ√(2/π).
    assert abs(d.mean() - DRAWN_NOISE * math.sqrt(2 / math.pi)) < 0.005
    clean = polyline(vertices, 20_000, gen(3), noise=0.0).numpy()
    assert distance_to_polyline(clean, vertices).max() < 1e-2
    lengths = np.linalg.norm(np.diff(vertices, axis=0), axis=1)
    on_third = (clean[:, 0] > 2 - 1e-9).mean()  # the vertical last segment
    assert abs(on_third - lengths[2] / lengths.sum()) < 0.015


def test_polyline_needs_a_line():
    with pytest.raises(ValueError, match="at least 2 points"):
        polyline(np.array([[0.0, 0.0]]), 10, gen())
    with pytest.raises(ValueError, match="coincide"):
        polyline(np.array([[1.0, 1.0], [1.0, 1.0]]), 10, gen())
    assert toy("drawn", 10, gen(), shape="0,0;1,1").shape == (10, 2)
    with pytest.raises(ValueError, match="toy must be one of"):
        toy("spiral", 10, gen())


def test_digits_are_scikit_learns_scaled_to_minus_one_one():
    from sklearn.datasets import load_digits

    x = digits()
    assert x.shape == (1797, 64) and x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal((x + 1) * 8, load_digits().data)
