"""Data sets for the generative experiments: 2-D toys, a shape drawn by clicks, 8×8 digits.

Every 2-D toy lies within the box [-3, 3]² (the drawing area of the page), with a spread of
about one, so one network and one schedule suit them all. Every random draw comes from the
``torch.Generator`` passed in. The digits are scikit-learn's bundled ``load_digits`` (no
download), scaled from 0…16 to [-1, 1].
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

TOYS = ("swiss_roll", "moons", "gaussians", "ring", "drawn")
BOX = 3.0  # toys and drawn points lie in [-BOX, BOX]²
DRAWN_NOISE = 0.06  # std of the Gaussian blur around a drawn polyline
DIGITS_SIDE = 8


def _randn(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(n, d, generator=g, dtype=torch.float64, device=g.device)


def _rand(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64, device=g.device)


def swiss_roll(n: int, g: torch.Generator) -> torch.Tensor:
    """(θ cos θ, θ sin θ)/7 for θ ~ U(1.5π, 4.5π), plus noise of std 0.05: (n, 2)."""
    theta = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    x = torch.stack([theta * theta.cos(), theta * theta.sin()], dim=1) / 7.0
    return x + 0.05 * _randn(n, 2, g)


def moons(n: int, g: torch.Generator) -> torch.Tensor:
    """scikit-learn's two interleaving half circles, centred and scaled by 1.5, noise 0.08."""
    upper = _rand(n, g) < 0.5
    theta = math.pi * _rand(n, g)
    first = torch.stack([theta.cos(), theta.sin()], dim=1)
    second = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where(upper[:, None], first, second) - torch.tensor([0.5, 0.25], device=g.device)
    return 1.5 * x + 0.08 * _randn(n, 2, g)


def gaussians(n: int, g: torch.Generator, modes: int = 8) -> torch.Tensor:
    """An equal mixture of ``modes`` Gaussians of std 0.12 on the circle of radius 1.6."""
    k = torch.randint(0, modes, (n,), generator=g, device=g.device).to(torch.float64)
    angle = 2 * math.pi * k / modes
    centres = 1.6 * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + 0.12 * _randn(n, 2, g)


def ring(n: int, g: torch.Generator) -> torch.Tensor:
    """The circle of radius 1.5 with radial noise of std 0.08."""
    angle = 2 * math.pi * _rand(n, g)
    radius = 1.5 + 0.08 * _randn(n, 1, g)
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def parse_points(text: str) -> np.ndarray:
    """``"x,y;x,y;…"`` → (k, 2). Raises ValueError naming the bad point and the expected form."""
    text = text.strip()
    if not text:
        return np.zeros((0, 2))
    points = []
    for i, item in enumerate(text.split(";"), start=1):
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = (float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"point {i} is {item.strip()!r}; write points as 'x,y' separated by ';'"
            ) from None
        if not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > BOX:
            raise ValueError(f"point {i} ({x:g}, {y:g}) lies outside [-{BOX:g}, {BOX:g}]²")
        points.append((x, y))
    return np.array(points)


def polyline(points: np.ndarray, n: int, g: torch.Generator,
             noise: float = DRAWN_NOISE) -> torch.Tensor:
    """n points uniform along the polyline through ``points`` (by arc length), blurred by noise.

    Needs two points or more with some length between them.
    """
    vertices = torch.as_tensor(points, dtype=torch.float64, device=g.device)  # (k, 2)
    if len(vertices) < 2:
        raise ValueError(f"a drawn shape needs at least 2 points, got {len(vertices)}")
    lengths = (vertices[1:] - vertices[:-1]).norm(dim=1)  # (k-1,)
    total = float(lengths.sum())
    if total == 0:
        raise ValueError("the drawn points all coincide; draw a shape with some length")
    ends = torch.cumsum(lengths, 0)
    s = total * _rand(n, g)  # arc length of each sample
    segment = torch.searchsorted(ends, s).clamp(max=len(lengths) - 1)
    start = ends[segment] - lengths[segment]
    fraction = ((s - start) / lengths[segment].clamp(min=1e-12))[:, None]
    x = vertices[segment] + fraction * (vertices[segment + 1] - vertices[segment])
    return x + noise * _randn(n, 2, g)


TOY_SAMPLERS = {"swiss_roll": swiss_roll, "moons": moons, "gaussians": gaussians, "ring": ring}


def toy(name: str, n: int, g: torch.Generator, shape: str = "") -> torch.Tensor:
    """n points of the named toy (float64, on the generator's device); ``shape`` for 'drawn'."""
    if name == "drawn":
        return polyline(parse_points(shape), n, g)
    if name not in TOY_SAMPLERS:
        raise ValueError(f"toy must be one of {TOYS}, got {name!r}")
    return TOY_SAMPLERS[name](n, g)


@lru_cache(maxsize=1)
def digits() -> np.ndarray:
    """All 1,797 of scikit-learn's 8×8 digits as rows of 64 pixels in [-1, 1]: (1797, 64)."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    return load_digits().data / 8.0 - 1.0
