"""The theory checks against independent numpy computations of the same theorems
(CHECKS.md 1.3.2-e, 1.3.2-f, 1.3.3-b, 1.3.4-a, 1.3.4-c), and negative controls."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.experiments import optimizer_theory
from engine.experiments.loss_surfaces import Surface, make_surface
from engine.experiments.optimizer_rules import (
    adagrad,
    adam,
    adam_as_printed,
    gradient_descent,
    heavy_ball,
    nesterov,
    rmsprop,
    sgd_decaying,
)
from engine.experiments.optimizer_theory import (
    check_eps_critical,
    check_linear_rate,
    check_nesterov_bound,
    check_sgd_rate,
    check_sgd_variance,
    check_speedups,
    check_torch_agreement,
)

f64 = torch.float64


def _numpy_quadratic(mu, L, angle_deg):
    phi = math.radians(angle_deg)
    R = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    return R @ np.diag([mu, L]) @ R.T, R


def _numpy_momentum(A, theta0, eta, beta, nesterov_form, steps):
    """GD / heavy ball / Nesterov on h = ½θᵀAθ, written out from the sheet."""
    theta, prev = theta0.copy(), theta0.copy()
    path = [theta.copy()]
    for _ in range(steps):
        if nesterov_form:
            look = theta + beta * (theta - prev)
            new = look - eta * A @ look
        else:
            new = theta - eta * A @ theta + beta * (theta - prev)
        prev, theta = theta, new
        path.append(theta.copy())
    return np.array(path)


def _sines() -> Surface:
    """CHECKS 1.3.2-f: h(θ) = Σ θᵢ² + 3 sin² θᵢ, non-convex, L = 8, min h = 0 at 0."""

    def gap(theta):
        return (theta**2 + 3 * torch.sin(theta) ** 2).sum(dim=-1)

    def grad(theta):
        return 2 * theta + 3 * torch.sin(2 * theta)

    return Surface("sines", "Σθ² + 3 sin²θ", "", gap, grad,
                   torch.zeros(1, 2, dtype=f64), (-3.0, 3.0, -3.0, 3.0))


def test_eps_critical_bound_on_a_non_convex_function_1_3_2_f():
    surface = _sines()
    theta0 = torch.tensor([2.5, -1.7], dtype=f64)
    check, run, curves = check_eps_critical(surface, theta0, 400)
    assert check.passed and 0 < check.measured <= 1
    assert 8.0 <= run.L <= 8.0 * 1.06  # the grid estimate of L = 8, plus 5 %

    def h(t):
        return np.sum(t**2 + 3 * np.sin(t) ** 2)

    def dh(t):
        return 2 * t + 3 * np.sin(2 * t)

    # Independent: GD with η = 1/L in numpy, and the corrected bound for three ε.
    theta, grads = theta0.numpy().copy(), []
    for _ in range(400):
        grads.append(np.linalg.norm(dh(theta)))
        theta = theta - dh(theta) / run.L
    gap0 = h(theta0.numpy())
    for eps in (1e-1, 1e-2, 1e-3):
        T = math.ceil(2 * run.L * gap0 / eps**2)
        first = next(t for t, g in enumerate(grads) if g <= eps)
        assert first < T
    best = np.minimum.accumulate(grads)
    t = np.arange(1, 401)
    ratio = best / np.sqrt(2 * run.L * gap0 / t)
    assert check.measured == pytest.approx(ratio.max(), rel=1e-9)
    np.testing.assert_allclose(curves["best"], best[curves["t"].astype(int) - 1], rtol=1e-9)
    assert "A-1.3.2-4" in check.detail and "every iterate stayed in the box" in check.detail


def test_eps_critical_bound_holds_for_a_quadratic_start_outside_the_view():
    surface = make_surface("quadratic", mu=0.5, L=10.0, angle_deg=10.0)
    check, _, _ = check_eps_critical(surface, torch.tensor([9.0, -8.0], dtype=f64), 200)
    assert check.passed and "exact" in check.detail


def test_eps_critical_bound_is_tight_at_t_1_on_the_quadratic():
    # ‖∇h(θ₀)‖² ≤ 2L(h₀ − min h) with equality along the top eigenvector: ratio 1 at t = 1.
    surface = make_surface("quadratic", mu=1.0, L=20.0, angle_deg=30.0)
    top = torch.tensor([-math.sin(math.radians(30)), math.cos(math.radians(30))], dtype=f64)
    check, _, _ = check_eps_critical(surface, 3 * top, 100)
    assert check.measured == pytest.approx(1.0, abs=1e-12) and check.passed


@pytest.mark.parametrize(("mu", "L", "angle"), [(1.0, 20.0, 30.0), (0.05, 5.0, -70.0),
                                                 (2.0, 2.0, 0.0)])
def test_linear_rate_against_numpy_1_3_2_e(mu, L, angle):
    surface = make_surface("quadratic", mu=mu, L=L, angle_deg=angle)
    theta0 = torch.tensor([-3.5, 2.5], dtype=f64)
    _, run, _ = check_eps_critical(surface, theta0, 300)
    check, bound = check_linear_rate(surface, run)
    A, _ = _numpy_quadratic(mu, L, angle)
    path = _numpy_momentum(A, theta0.numpy(), 1 / L, 0.0, False, 300)
    gaps = 0.5 * np.einsum("ti,ij,tj->t", path, A, path)
    t = np.arange(301)
    np.testing.assert_allclose(bound, (1 - mu / L) ** t * gaps[0], rtol=1e-12)
    assert np.all(gaps[1:61] <= bound[1:61] + 1e-12 * gaps[0])
    assert check.passed and check.measured <= 1.0


def test_gd_contracts_the_gap_by_the_square_of_the_sheets_rate_along_v_mu():
    mu, L = 1.0, 20.0
    surface = make_surface("quadratic", mu=mu, L=L, angle_deg=30.0)
    v_mu = torch.tensor([math.cos(math.radians(30)), math.sin(math.radians(30))], dtype=f64)
    _, run, _ = check_eps_critical(surface, 2 * v_mu, 50)
    t = np.arange(51)
    np.testing.assert_allclose(run.gaps.numpy(), (1 - mu / L) ** (2 * t) * float(run.gaps[0]),
                               rtol=1e-9)
    check, _ = check_linear_rate(surface, run)
    assert check.passed and check.measured == pytest.approx((1 - mu / L), rel=1e-6)


def test_nesterov_bound_against_numpy_1_3_3_b():
    mu, L = 1.0, 100.0
    surface = make_surface("quadratic", mu=mu, L=L, angle_deg=15.0)
    theta0 = torch.tensor([4.0, -3.0], dtype=f64)
    check, gaps, bound, hb_gaps = check_nesterov_bound(surface, theta0, 150)
    assert check.passed
    A, _ = _numpy_quadratic(mu, L, 15.0)
    sk = math.sqrt(L / mu)
    path = _numpy_momentum(A, theta0.numpy(), 1 / L, (sk - 1) / (sk + 1), True, 150)
    expected = 0.5 * np.einsum("ti,ij,tj->t", path, A, path)
    np.testing.assert_allclose(gaps, expected, rtol=1e-9, atol=1e-300)
    start = expected[0] + mu / 2 * theta0.numpy() @ theta0.numpy()
    assert np.all(expected <= (1 - 1 / sk) ** np.arange(151) * start * (1 + 1e-12))
    hb = _numpy_momentum(A, theta0.numpy(), 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2,
                         ((sk - 1) / (sk + 1)) ** 2, False, 150)
    np.testing.assert_allclose(hb_gaps, 0.5 * np.einsum("ti,ij,tj->t", hb, A, hb), rtol=1e-9,
                               atol=1e-300)


def _numpy_worst_rates(mu, L, angle, window):
    A, R = _numpy_quadratic(mu, L, angle)
    sk = math.sqrt(L / mu)
    settings = [(1 / L, 0.0, False), (4 / (math.sqrt(L) + math.sqrt(mu)) ** 2,
                                      ((sk - 1) / (sk + 1)) ** 2, False),
                (1 / L, (sk - 1) / (sk + 1), True)]
    rates = []
    for eta, beta, nesterov_form in settings:
        worst = max(np.linalg.norm(_numpy_momentum(A, R[:, i], eta, beta, nesterov_form,
                                                   window)[-1]) for i in range(2))
        rates.append(worst ** (1 / window))
    return rates


@pytest.mark.parametrize("kappa", [4.0, 20.0, 100.0, 10_000.0])
def test_speedups_of_momentum_are_about_sqrt_kappa(kappa):
    mu, L = 0.01, 0.01 * kappa
    surface = make_surface("quadratic", mu=mu, L=L, angle_deg=-20.0)
    heavy, nag = check_speedups(surface)
    assert heavy.passed and nag.passed
    window = int(heavy.detail.split("T = ")[1].split(" ")[0])
    gd_rate, hb_rate, nag_rate = _numpy_worst_rates(mu, L, -20.0, window)
    assert heavy.measured == pytest.approx(math.log(hb_rate) / math.log(gd_rate), rel=1e-6)
    assert nag.measured == pytest.approx(math.log(nag_rate) / math.log(gd_rate), rel=1e-6)
    # Predicted: ln ρ / ln(1 − 1/κ), ≈ 2√κ and √κ; measured within 0.6–1× (CHECKS calibration).
    for check in (heavy, nag):
        assert 0.6 <= check.measured / check.reference <= 1.0
    if kappa >= 100:
        assert heavy.reference == pytest.approx(2 * math.sqrt(kappa), rel=0.05)
        assert nag.reference == pytest.approx(math.sqrt(kappa), rel=0.05)


@pytest.mark.parametrize("seed", range(3))
def test_sgd_variance_check_1_3_4_a(seed):
    surface = make_surface("noisy_quadratic", mu=1.0, L=20.0, samples=200, noise=1.0, seed=seed)
    theta0 = torch.tensor([-3.5, 2.5], dtype=f64)
    check = check_sgd_variance(surface, theta0, 4, torch.Generator().manual_seed(seed))
    X, y = surface.data.X.numpy(), surface.data.y.numpy()
    g = X * (X @ theta0.numpy() - y)[:, None]
    V = np.mean(np.sum((g - g.mean(0)) ** 2, axis=1))
    assert check.reference == pytest.approx(V / 4, rel=1e-12)
    assert check.passed, check.detail


@pytest.mark.parametrize("seed", [18, 19])
def test_sgd_rate_is_one_over_t_1_3_4_c(seed):
    surface = make_surface("noisy_quadratic", mu=1.0, L=10.0, samples=200, noise=1.0, seed=seed)
    check, curves = check_sgd_rate(surface, torch.tensor([-3.5, 2.5], dtype=f64), 4,
                                   torch.Generator().manual_seed(seed))
    assert check.passed and -2.5 <= check.measured <= -0.8, check.detail
    # The fitted line goes through the measured means (in log space) at the checkpoints.
    assert np.all(curves["mean"] > 0) and curves["t"][-1] == 16 * 250


def test_sgd_rate_check_fails_for_a_constant_step():
    # A negative control: with a constant step the mean gap stalls at a noise floor.
    surface = make_surface("noisy_quadratic", mu=1.0, L=10.0, samples=200, noise=1.0, seed=3)
    original = optimizer_theory.sgd_decaying
    try:
        optimizer_theory.sgd_decaying = lambda eta, t0: sgd_decaying(eta, 1e12)
        check, _ = check_sgd_rate(surface, torch.tensor([-3.5, 2.5], dtype=f64), 4,
                                  torch.Generator().manual_seed(3))
    finally:
        optimizer_theory.sgd_decaying = original
    assert not check.passed and check.measured > -0.5


RULES = {
    "GD": gradient_descent(0.01), "heavy ball": heavy_ball(0.01, 0.8),
    "Nesterov": nesterov(0.01, 0.8), "AdaGrad": adagrad(0.5, 1e-8),
    "RMSprop": rmsprop(0.01, 0.9, 1e-8), "Adam": adam(0.05, 0.9, 0.999, 1e-8),
    "Adam as printed": adam_as_printed(0.05, 0.9, 0.999, 1e-8), "SGD": sgd_decaying(0.01, 50),
}


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "beale", "himmelblau", "saddle"])
def test_torch_agreement_check_passes_on_every_surface(name):
    surface = make_surface(name)
    theta0 = torch.tensor([-1.2, 1.1], dtype=f64)
    check = check_torch_agreement(surface, list(RULES), list(RULES.values()), theta0, 100)
    assert check.passed, check.detail
    assert check.measured <= 1e-10


def test_torch_agreement_treats_a_0_over_0_in_both_as_agreement():
    surface = make_surface("beale")  # ∂h/∂x = 0 along y = 1: at δ = 0 the first step is 0/0
    rules = [rmsprop(0.01, 0.9, 1e-8), adam_as_printed(0.01, 0.9, 0.999, 1e-8)]
    check = check_torch_agreement(surface, ["RMSprop", "Adam as printed"], rules,
                                  torch.tensor([1.0, 1.0], dtype=f64), 50)
    assert check.passed and "diverged" not in check.detail


def test_torch_agreement_stops_where_both_diverge():
    surface = make_surface("rosenbrock")
    check = check_torch_agreement(surface, ["GD"], [gradient_descent(0.05)],
                                  torch.tensor([-1.5, 2.0], dtype=f64), 100)
    assert check.passed and "then it diverged" in check.detail


def test_torch_agreement_check_catches_the_missing_bias_correction(monkeypatch):
    # Negative control: compare the sheet's Adam with torch's bias-corrected Adam.
    surface = make_surface("quadratic")
    real_torch_step = optimizer_theory.torch_step

    def corrected(rule, state, gradient):
        return real_torch_step(replace(rule, bias_correction=True), state, gradient)

    monkeypatch.setattr(optimizer_theory, "torch_step", corrected)
    check = check_torch_agreement(surface, ["Adam as printed"], [RULES["Adam as printed"]],
                                  torch.tensor([-3.5, 2.5], dtype=f64), 20)
    assert not check.passed and check.measured > 1e-3
