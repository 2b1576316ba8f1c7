"""The loss surfaces: analytic gradients against autograd, minima, the least-squares data and
its minibatch gradients against numpy and the SGD variance formula (CHECKS.md 1.3.4-a)."""

import math

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from engine.experiments.loss_surfaces import (
    BOXES,
    SURFACES,
    grid,
    least_squares,
    make_surface,
    quadratic_hessian,
    smoothness_on_box,
)

f64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _points(surface, n: int, seed: int) -> torch.Tensor:
    x_min, x_max, y_min, y_max = surface.box
    u = torch.rand(n, 2, generator=_gen(seed), dtype=f64)
    return torch.stack([x_min + (x_max - x_min) * u[:, 0], y_min + (y_max - y_min) * u[:, 1]], 1)


# Each surface written out once more, independently, as plain numpy formulas of (x, y).
NUMPY_H = {
    "rosenbrock": lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
    "beale": lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
    + (2.625 - x + x * y**3) ** 2,
    "himmelblau": lambda x, y: (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2,
    "saddle": lambda x, y: x**2 / 2 + (y**2 - 1) ** 2 / 4,
}


@pytest.mark.parametrize("name", SURFACES)
def test_gradient_is_the_autograd_gradient_of_the_gap(name):
    surface = make_surface(name, mu=0.5, L=30.0, angle_deg=25.0, seed=3)
    points = _points(surface, 400, 0)
    expected = vmap(grad(lambda p: surface.gap(p)))(points)
    torch.testing.assert_close(surface.grad(points), expected, rtol=1e-12, atol=1e-10)
    # Batched shapes: (K, B, 2) in, (K, B, 2) out.
    assert surface.grad(points.reshape(4, 100, 2)).shape == (4, 100, 2)
    assert surface.gap(points.reshape(4, 100, 2)).shape == (4, 100)


@pytest.mark.parametrize("name", sorted(NUMPY_H))
def test_classic_surfaces_match_their_textbook_formulas(name):
    surface = make_surface(name)
    points = _points(surface, 200, 1).numpy()
    expected = NUMPY_H[name](points[:, 0], points[:, 1])
    np.testing.assert_allclose(surface.gap(torch.from_numpy(points)).numpy(), expected,
                               rtol=1e-13)
    # The minima are exact: zero gap and zero gradient.
    minima = surface.minima
    assert float(surface.gap(minima).abs().max()) < 1e-20
    assert float(surface.grad(minima).abs().max()) < 1e-12
    assert torch.equal(surface.distance(minima), torch.zeros(len(minima), dtype=f64))
    assert (surface.gap(_points(surface, 1000, 2)) >= 0).all()


def test_saddle_has_a_strict_saddle_between_its_minima():
    surface = make_surface("saddle")
    origin = torch.zeros(1, 2, dtype=f64)
    assert float(surface.grad(origin).abs().max()) == 0.0
    assert float(surface.hessian_norm(origin)[0]) == pytest.approx(1.0, abs=1e-12)
    H = torch.autograd.functional.hessian(lambda p: surface.gap(p), origin[0])
    np.testing.assert_allclose(np.linalg.eigvalsh(H.numpy()), [-1.0, 1.0], atol=1e-12)
    assert float(surface.gap(origin)[0]) == pytest.approx(0.25)


def test_quadratic_has_the_chosen_eigenvalues_and_rotation():
    A = quadratic_hessian(0.3, 40.0, 30.0).numpy()
    evals, evecs = np.linalg.eigh(A)
    np.testing.assert_allclose(evals, [0.3, 40.0], rtol=1e-13)
    phi = math.radians(30.0)
    assert abs(abs(evecs[:, 0] @ [math.cos(phi), math.sin(phi)]) - 1) < 1e-12
    surface = make_surface("quadratic", mu=0.3, L=40.0, angle_deg=30.0)
    assert abs(surface.mu - 0.3) < 1e-12 and abs(surface.L - 40.0) < 1e-12
    theta = _points(surface, 50, 3).numpy()
    np.testing.assert_allclose(surface.gap(torch.from_numpy(theta)).numpy(),
                               0.5 * np.einsum("bi,ij,bj->b", theta, A, theta), rtol=1e-13)


def test_least_squares_data_has_the_hessian_and_the_lstsq_solution():
    A = quadratic_hessian(1.0, 20.0, -40.0)
    data = least_squares(A, 300, 0.7, _gen(4))
    X, y = data.X.numpy(), data.y.numpy()
    np.testing.assert_allclose(X.T @ X / 300, A.numpy(), atol=1e-12)
    theta_hat, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(data.theta_hat.numpy(), theta_hat, atol=1e-12)

    surface = make_surface("noisy_quadratic", mu=1.0, L=20.0, angle_deg=-40.0, samples=300,
                           noise=0.7, seed=4)
    theta = _points(surface, 100, 5).numpy()
    loss = 0.5 * ((theta @ surface.data.X.numpy().T - surface.data.y.numpy()) ** 2).mean(1)
    min_loss = 0.5 * np.mean((surface.data.X.numpy() @ surface.data.theta_hat.numpy()
                              - surface.data.y.numpy()) ** 2)
    np.testing.assert_allclose(surface.gap(torch.from_numpy(theta)).numpy(), loss - min_loss,
                               rtol=1e-9, atol=1e-12)
    # The same seed, the same surface (the contour map is drawn before the run).
    again = make_surface("noisy_quadratic", mu=1.0, L=20.0, angle_deg=-40.0, samples=300,
                         noise=0.7, seed=4)
    assert torch.equal(again.data.X, surface.data.X)


def test_sgd_gradients_are_unbiased_with_the_variance_formula_1_3_4_a():
    surface = make_surface("noisy_quadratic", mu=0.5, L=10.0, samples=50, noise=2.0, seed=17)
    data = surface.data
    theta = torch.tensor([1.5, -2.0], dtype=f64)
    # Per-sample gradients against torch.func on the per-sample loss ½(xᵀθ − y)².
    per_sample = vmap(grad(lambda p, x, t: 0.5 * (x @ p - t) ** 2), in_dims=(None, 0, 0))(
        theta, data.X, data.y)
    torch.testing.assert_close(data.per_sample_grads(theta), per_sample, rtol=0, atol=1e-12)
    g = per_sample.numpy()
    full = g.mean(0)
    np.testing.assert_allclose(full, surface.grad(theta).numpy(), atol=1e-12)
    variance = np.mean(np.sum((g - full) ** 2, axis=1))
    assert data.variance(theta) == pytest.approx(variance, rel=1e-12)
    assert variance == pytest.approx(np.mean(np.sum(g**2, axis=1)) - full @ full, rel=1e-10)

    generator = _gen(17)
    for b in (1, 8):
        samples = data.minibatch_grad(theta.expand(20_000, 2), b, generator).numpy()
        se = samples.std(0) / math.sqrt(len(samples))
        assert np.all(np.abs(samples.mean(0) - full) <= 4 * se)
        spread = np.sum((samples - full) ** 2, axis=1)
        assert abs(spread.mean() - variance / b) <= 4 * spread.std() / math.sqrt(len(spread))


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "himmelblau", "saddle"])
def test_smoothness_bounds_the_hessian_on_the_sublevel_set(name):
    surface = make_surface(name)
    theta0 = _points(surface, 1, 6)[0]
    smooth = smoothness_on_box(surface, theta0)
    x_min, x_max, y_min, y_max = smooth.box
    assert x_min <= float(theta0[0]) <= x_max and y_min <= float(theta0[1]) <= y_max
    # Random points of the box: the Hessian norm (autograd) stays below L.
    u = torch.rand(5000, 2, generator=_gen(7), dtype=f64)
    points = torch.stack([x_min + (x_max - x_min) * u[:, 0], y_min + (y_max - y_min) * u[:, 1]],
                         1)
    assert float(surface.hessian_norm(points).max()) <= smooth.L
    # Sublevel points of the view all lie in the box (unless the set is unbounded, as Beale's).
    _, _, view = grid(BOXES[name], 200)
    inside = view[surface.gap(view) <= surface.gap(theta0)]
    if not smooth.clipped:
        assert (inside[:, 0] >= x_min).all() and (inside[:, 0] <= x_max).all()
        assert (inside[:, 1] >= y_min).all() and (inside[:, 1] <= y_max).all()


def test_smoothness_is_exact_for_the_quadratic_and_handles_a_start_at_the_minimum():
    surface = make_surface("quadratic", mu=2.0, L=7.0)
    assert abs(smoothness_on_box(surface, torch.zeros(2, dtype=f64)).L - 7.0) < 1e-12
    rosenbrock = make_surface("rosenbrock")
    smooth = smoothness_on_box(rosenbrock, torch.tensor([1.0, 1.0], dtype=f64))
    assert smooth.L >= 1001.0  # ‖∇²h(1, 1)‖₂ = 1001.6
    assert smooth.box[0] < 1.0 < smooth.box[1]


def test_unknown_surface_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="rosenbrock"):
        make_surface("banana")
