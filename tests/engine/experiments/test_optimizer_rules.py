"""The batched update rules against torch.optim (gradients by autograd), step for step
(CHECKS.md 1.3.2-a, 1.3.3-a to 1.3.3-e), the sheet's Adam against Kingma & Ba, batching, and
the optimal heavy-ball and Nesterov parameters against the spectral radius of their iteration."""

import math

import numpy as np
import pytest
import torch

from engine.experiments.loss_surfaces import make_surface
from engine.experiments.optimizer_rules import (
    BatchedOptimizers,
    Coefficients,
    adagrad,
    adam,
    adam_as_printed,
    gradient_descent,
    heavy_ball,
    heavy_ball_optimal,
    nesterov,
    nesterov_optimal,
    predicted_rates,
    rmsprop,
    sgd_decaying,
    torch_comparable,
    torch_optimizer,
    torch_reference,
    torch_step,
    trajectories,
)

f64 = torch.float64


def _problem(seed: int):
    """A random SPD quadratic h(θ) = ½θᵀAθ − bᵀθ in 2-D: (A, b, the loss, its gradient)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(2, 2, generator=g, dtype=f64))
    A = Q @ torch.diag(torch.tensor([0.5, 8.0], dtype=f64)) @ Q.T
    b = torch.randn(2, generator=g, dtype=f64)

    def loss(theta):
        return 0.5 * theta @ A @ theta - b @ theta

    def gradient(theta):
        return theta @ A - b

    return A, b, loss, gradient


def _torch_path(make_optimizer, theta0, loss, steps, schedule=None):
    """torch.optim's parameter after each step, gradients from autograd of ``loss``."""
    param = theta0.clone().requires_grad_(True)
    opt = make_optimizer([param])
    sched = schedule(opt) if schedule else None
    path = [param.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        loss(param).backward()
        opt.step()
        if sched:
            sched.step()
        path.append(param.detach().clone())
    return torch.stack(path)


def _engine_path(rule, theta0, gradient, steps):
    return trajectories([rule], theta0[None], gradient, steps)[0, 0]


THETA0 = torch.tensor([2.0, -1.5], dtype=f64)


def test_gradient_descent_is_the_explicit_update_1_3_2_a():
    A, b, loss, gradient = _problem(0)
    path = _engine_path(gradient_descent(0.1), THETA0, gradient, 50).numpy()
    theta, A_np, b_np = THETA0.numpy().copy(), A.numpy(), b.numpy()
    for t in range(50):
        np.testing.assert_allclose(path[t], theta, rtol=0, atol=1e-12)
        theta = theta - 0.1 * (A_np @ theta - b_np)
    reference = _torch_path(lambda p: torch.optim.SGD(p, lr=0.1), THETA0, loss, 50)
    torch.testing.assert_close(torch.from_numpy(path), reference, rtol=0, atol=1e-12)


def test_heavy_ball_is_sgd_with_momentum_1_3_3_a():
    _, _, loss, gradient = _problem(7)
    path = _engine_path(heavy_ball(0.1, 0.9), THETA0, gradient, 100)
    reference = _torch_path(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0),
                            THETA0, loss, 100)
    torch.testing.assert_close(path, reference, rtol=0, atol=1e-10)
    # The sheet's form, θ_{t+1} = θ_t − η∇h(θ_t) + β(θ_t − θ_{t−1}), written out.
    P = path.numpy()
    for t in range(1, 100):
        step = P[t] - 0.1 * gradient(torch.from_numpy(P[t])).numpy() + 0.9 * (P[t] - P[t - 1])
        np.testing.assert_allclose(P[t + 1], step, rtol=0, atol=1e-12)


def test_nesterov_lookahead_is_torchs_parameter_1_3_3_b():
    _, _, loss, gradient = _problem(9)
    beta = 0.8
    path = _engine_path(nesterov(0.1, beta), THETA0, gradient, 100)
    previous = torch.cat([path[:1], path[:-1]])
    lookahead = path + beta * (path - previous)  # θ̂_{t+1} = θ_t + β(θ_t − θ_{t−1})
    reference = _torch_path(lambda p: torch.optim.SGD(p, lr=0.1, momentum=beta, nesterov=True),
                            THETA0, loss, 100)
    torch.testing.assert_close(lookahead, reference, rtol=0, atol=1e-10)
    # θ_{t+1} = θ̂_{t+1} − η∇h(θ̂_{t+1})
    expected = lookahead[1:-1] - 0.1 * gradient(lookahead[1:-1])
    torch.testing.assert_close(path[2:], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("delta", [0.0, 1e-3])
def test_adagrad_matches_torch_1_3_3_c(delta):
    _, _, loss, gradient = _problem(11)
    path = _engine_path(adagrad(0.5, delta), THETA0, gradient, 100)
    # The sheet's δ inside the root is torch's accumulator started at δ.
    reference = _torch_path(
        lambda p: torch.optim.Adagrad(p, lr=0.5, eps=0.0, initial_accumulator_value=delta),
        THETA0, loss, 100)
    torch.testing.assert_close(path, reference, rtol=0, atol=1e-10)


def test_adam_is_kingma_ba_and_torch_1_3_3_d():
    _, _, loss, gradient = _problem(13)
    path = _engine_path(adam(0.05, 0.9, 0.999, 1e-8), THETA0, gradient, 100)
    reference = _torch_path(lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.999), eps=1e-8),
                            THETA0, loss, 100)
    torch.testing.assert_close(path, reference, rtol=0, atol=1e-10)


def test_adam_as_printed_differs_by_the_bias_correction_1_3_3_d():
    _, _, loss, gradient = _problem(13)
    printed = _engine_path(adam_as_printed(0.05, 0.9, 0.999, 0.0), THETA0, gradient, 100)
    corrected = _engine_path(adam(0.05, 0.9, 0.999, 0.0), THETA0, gradient, 1)
    ratio = (printed[1] - THETA0) / (corrected[1] - THETA0)
    torch.testing.assert_close(ratio, torch.full((2,), 0.1 / math.sqrt(0.001), dtype=f64),
                               rtol=1e-12, atol=0)
    assert 0.1 / math.sqrt(0.001) == pytest.approx(3.162, abs=1e-3)
    # Without bias correction, Adam is torch's Adam with lr_t = η(1 − βᵗ)/√(1 − αᵗ).
    reference = _torch_path(
        lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.999), eps=0.0), THETA0, loss, 100,
        schedule=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: (1 - 0.9 ** (k + 1)) / math.sqrt(1 - 0.999 ** (k + 1))))
    torch.testing.assert_close(printed, reference, rtol=0, atol=1e-10)


def test_rmsprop_is_adam_without_momentum_1_3_3_e():
    _, _, loss, gradient = _problem(15)
    path = _engine_path(rmsprop(0.01, 0.9, 0.0), THETA0, gradient, 100)
    reference = _torch_path(lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0),
                            THETA0, loss, 100)
    torch.testing.assert_close(path, reference, rtol=0, atol=1e-10)
    as_adam = _engine_path(adam_as_printed(0.01, 0.0, 0.9, 1e-6), THETA0, gradient, 100)
    torch.testing.assert_close(_engine_path(rmsprop(0.01, 0.9, 1e-6), THETA0, gradient, 100),
                               as_adam, rtol=0, atol=1e-14)


def test_sgd_with_decaying_step_matches_a_lambda_schedule():
    _, _, loss, gradient = _problem(3)
    path = _engine_path(sgd_decaying(0.2, 10.0), THETA0, gradient, 60)
    reference = _torch_path(
        lambda p: torch.optim.SGD(p, lr=0.2), THETA0, loss, 60,
        schedule=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 10 / (10 + k)))
    torch.testing.assert_close(path, reference, rtol=0, atol=1e-12)


RULES = [
    gradient_descent(0.05), heavy_ball(0.05, 0.7), nesterov(0.04, 0.85), adagrad(0.5, 1e-8),
    rmsprop(0.02, 0.9, 1e-8), adam(0.05, 0.9, 0.999, 1e-8),
    adam_as_printed(0.05, 0.9, 0.999, 1e-8), sgd_decaying(0.05, 50.0),
]


def test_a_batch_of_optimizers_and_starts_equals_each_run_alone():
    surface = make_surface("saddle")
    starts = torch.tensor([[0.5, 0.01], [-1.0, 2.0], [2.0, -1.5]], dtype=f64)
    together = trajectories(RULES, starts, surface.grad, 80)  # (8, 3, 81, 2)
    assert together.shape == (8, 3, 81, 2) and torch.isfinite(together).all()
    for k, rule in enumerate(RULES):
        for j in range(3):
            alone = _engine_path(rule, starts[j], surface.grad, 80)
            torch.testing.assert_close(together[k, j], alone, rtol=1e-13, atol=1e-13)


def test_settings_per_trajectory_sweep_one_start():
    _, _, _, gradient = _problem(5)
    etas, betas = [0.01, 0.05, 0.2], [0.0, 0.5, 0.9]
    settings = [[heavy_ball(e, b) for b in betas for e in etas],
                [adam(e, b, 0.99, 1e-8) for b in betas for e in etas]]
    c = Coefficients.stack(settings)
    assert c.eta.shape == (2, 9, 1)
    sweep = BatchedOptimizers(c, THETA0[None], gradient).run(40)  # (2, 9, 41, 2)
    for k in range(2):
        for i in range(9):
            alone = _engine_path(settings[k][i], THETA0, gradient, 40)
            torch.testing.assert_close(sweep[k, i], alone, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="same number"):
        Coefficients.stack([[gradient_descent(0.1)], [gradient_descent(0.1)] * 2])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: str(r)[:40])
def test_torch_reference_of_each_rule_agrees_with_the_engine(rule):
    _, _, _, gradient = _problem(21)
    rule = torch_comparable(rule)
    torch.testing.assert_close(
        _engine_path(rule, THETA0, gradient, 100)
        if not rule.lookahead else _lookahead(rule, gradient),
        torch_reference(rule, THETA0, gradient, 100), rtol=0, atol=1e-10)


def _lookahead(rule, gradient):
    path = _engine_path(rule, THETA0, gradient, 100)
    return path + rule.lookahead * (path - torch.cat([path[:1], path[:-1]]))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: str(r)[:40])
def test_resuming_from_a_state_continues_the_run(rule):
    _, _, _, gradient = _problem(23)
    whole = BatchedOptimizers(Coefficients.stack([rule]), THETA0[None], gradient)
    for _ in range(7):
        whole.step()
    state = whole.state()
    assert state.t == 7
    resumed = BatchedOptimizers.resume(rule, state, gradient)
    for _ in range(30):
        torch.testing.assert_close(resumed.step(), whole.step(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: str(r)[:40])
def test_one_torch_step_from_any_state_is_the_engines_step(rule):
    _, _, _, gradient = _problem(25)
    rule = torch_comparable(rule)
    run = BatchedOptimizers(Coefficients.stack([rule]), THETA0[None], gradient)
    for _ in range(40):
        state = run.state()
        run.step()
        mine = (run.lookahead() if rule.lookahead else run.theta)[0, 0]
        torch.testing.assert_close(torch_step(rule, state, gradient), mine, rtol=0, atol=1e-12)


def test_delta_inside_a_decaying_root_has_no_torch_counterpart():
    param = THETA0.clone().requires_grad_(True)
    with pytest.raises(ValueError, match="δ = 0"):
        torch_optimizer(rmsprop(0.1, 0.9, 1e-8), param)
    assert torch_comparable(rmsprop(0.1, 0.9, 1e-8)).delta_in == 0.0
    assert torch_comparable(adagrad(0.1, 1e-3)).delta_in == 1e-3  # torch's accumulator start


def _spectral_radius(rule, A: np.ndarray) -> float:
    """Spectral radius of the linear map (θ_t, θ_{t−1}) → (θ_{t+1}, θ_t) on h = ½θᵀAθ."""
    eta, a, b = rule.eta, rule.lookahead, rule.heavy_ball
    n = len(A)
    identity = np.eye(n)
    # θ_{t+1} = (I − ηA)((1 + a)θ_t − aθ_{t−1}) + b(θ_t − θ_{t−1})
    top = np.hstack([(identity - eta * A) * (1 + a) + b * identity,
                     -(identity - eta * A) * a - b * identity])
    M = np.vstack([top, np.hstack([identity, np.zeros((n, n))])])
    return float(np.abs(np.linalg.eigvals(M)).max())


@pytest.mark.parametrize("kappa", [4.0, 30.0, 1000.0])
def test_optimal_momentum_parameters_give_the_predicted_rates(kappa):
    mu, L = 0.5, 0.5 * kappa
    A = np.diag([mu, L])
    rates = predicted_rates(mu, L)
    assert _spectral_radius(gradient_descent(1 / L), A) == pytest.approx(rates["gd"], rel=1e-12)
    # A double eigenvalue at the optimum: its numerical radius is only ~√eps accurate.
    assert _spectral_radius(heavy_ball_optimal(mu, L), A) == pytest.approx(
        rates["heavy_ball"], rel=1e-6)
    assert _spectral_radius(nesterov_optimal(mu, L), A) == pytest.approx(
        rates["nesterov"], rel=1e-6)
    sqrt_kappa = math.sqrt(kappa)
    assert rates["heavy_ball"] == pytest.approx((sqrt_kappa - 1) / (sqrt_kappa + 1))
    assert rates["nesterov"] == pytest.approx(1 - 1 / sqrt_kappa)
