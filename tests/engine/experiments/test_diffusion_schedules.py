"""Diffusion math (CHECKS.md 1.10.3-b, -g, -i, -j): schedules, forward marginal, posterior,
reverse steps.

References are independent of the engine: the chain's variance by its own recursion
v_t = α_t v_{t-1} + β_t, the posterior by conditioning a 2×2 joint covariance with numpy's
linear algebra, the cosine schedule by its defining f(t)/f(0), and the optimal ε-predictor of
Gaussian data in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.experiments.diffusion_schedules import (
    BETA_MAX,
    Schedule,
    cosine_schedule,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    forward_step,
    linear_schedule,
    make_schedule,
    posterior_by_conditioning,
    posterior_mean,
    posterior_mean_eps,
    predict_x0,
    q_sample,
)


def ho_schedule(T: int = 200) -> Schedule:
    """Ho et al.'s β linear in [1e-4, 0.02] (CHECKS.md 1.10.3-b), unscaled."""
    return Schedule("linear", np.concatenate([[0.0], np.linspace(1e-4, 0.02, T)]))


def chain_variance(beta: np.ndarray) -> np.ndarray:
    """Var(x_t | x_0) by the recursion v_t = (1 - β_t) v_{t-1} + β_t, v_0 = 0."""
    v = np.zeros_like(beta)
    for t in range(1, len(beta)):
        v[t] = (1 - beta[t]) * v[t - 1] + beta[t]
    return v


# ----------------------------------------------------------------------------------------------
# Schedules.


@pytest.mark.parametrize("T", [50, 200, 1000])
def test_linear_schedule_is_ho_et_al_scaled_by_1000_over_T(T):
    s = linear_schedule(T)
    assert s.T == T and s.beta[0] == 0.0 and s.alpha_bar[0] == 1.0
    np.testing.assert_allclose(s.beta[[1, T]], [0.1 / T, 20.0 / T], rtol=1e-12)
    np.testing.assert_allclose(np.diff(s.beta[1:]), (20.0 - 0.1) / T / (T - 1), rtol=1e-9)
    np.testing.assert_allclose(s.alpha_bar, np.cumprod(1 - s.beta), rtol=1e-12)
    assert abs(s.beta.sum() - 10.05) < 1e-9
    assert s.alpha_bar[-1] < math.exp(-10)  # x_T is N(0, I) up to e^-5 of x_0, whatever T


@pytest.mark.parametrize("T", [50, 200, 1000])
def test_cosine_schedule_follows_its_definition(T):
    s = cosine_schedule(T)
    t = np.arange(T + 1)
    f = np.cos((t / T + 0.008) / 1.008 * np.pi / 2) ** 2
    unclipped = s.beta < BETA_MAX
    np.testing.assert_allclose(s.alpha_bar[:-1][unclipped[:-1]], (f / f[0])[:-1][unclipped[:-1]],
                               rtol=1e-10)
    assert s.beta[-1] == BETA_MAX  # f(T) = 0 would make the last β equal 1
    assert (s.beta[1:] > 0).all() and (np.diff(s.alpha_bar) < 0).all()


def test_beta_tilde_is_between_zero_and_beta():
    for s in (linear_schedule(200), cosine_schedule(200), ho_schedule()):
        assert s.beta_tilde[1] == 0.0
        assert (s.beta_tilde[2:] > 0).all() and (s.beta_tilde[1:] <= s.beta[1:]).all()


def test_bad_schedules_say_what_is_allowed():
    with pytest.raises(ValueError, match="linear.*cosine"):
        make_schedule("sigmoid", 100)
    with pytest.raises(ValueError, match="T >= 50"):
        linear_schedule(20)


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.10.3-b: the forward marginal, seed 2.


def test_forward_chain_has_the_closed_form_marginal():
    s = ho_schedule(200)
    rng = np.random.default_rng(2)
    x0, n = 1.7, 100_000
    x = np.full(n, x0)
    for t in range(1, s.T + 1):
        x = forward_step(x, t, s, rng.standard_normal(n))
        if t in (10, 50, 200):
            mean, var = x.mean(), x.var(ddof=1)
            se_mean = math.sqrt(var / n)
            se_var = math.sqrt((((x - mean) ** 4).mean() - var**2) / n)
            assert abs(mean - math.sqrt(s.alpha_bar[t]) * x0) <= 4 * se_mean
            assert abs(var - (1 - s.alpha_bar[t])) <= 4 * se_var
    # The transcribed variance "β̄_t" read as β_t would be far off at t = T.
    assert abs((1 - s.alpha_bar[-1]) - s.beta[-1]) > 0.5


def test_closed_form_variance_matches_the_chain_recursion():
    for s in (linear_schedule(300), cosine_schedule(300), ho_schedule()):
        np.testing.assert_allclose(1 - s.alpha_bar, chain_variance(s.beta), atol=1e-12)


def test_q_sample_broadcasts_one_time_per_row():
    s = linear_schedule(100)
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    t = np.array([1, 10, 50, 99, 100])
    expected = np.stack([math.sqrt(s.alpha_bar[k]) * x0[i] + math.sqrt(1 - s.alpha_bar[k]) * eps[i]
                         for i, k in enumerate(t)])
    np.testing.assert_allclose(q_sample(x0, t, s, eps), expected, atol=1e-14)
    np.testing.assert_allclose(predict_x0(expected, eps, t, s), x0, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.10.3-g, -i: the posterior q(x_{t-1} | x_t, x_0), seed 7.


def conditioned(s: Schedule, t: int) -> tuple[float, float, float]:
    """(coefficient of x_0, coefficient of x_t, variance) of x_{t-1} | x_t, x_0 by numpy linear
    algebra on the joint covariance of (x_{t-1}, x_t) given x_0, built from the recursion."""
    v = chain_variance(s.beta)
    a = 1 - s.beta[t]
    cov = np.array([[v[t - 1], math.sqrt(a) * v[t - 1]],
                    [math.sqrt(a) * v[t - 1], v[t]]])
    mean_scale = np.sqrt(1 - v)  # E[x_tau | x_0] = sqrt(alpha_bar_tau) x_0 = sqrt(1 - v_tau) x_0
    gain = cov[0, 1] * np.linalg.inv(cov[1:, 1:])[0, 0]
    variance = cov[0, 0] - gain * cov[1, 0]
    return mean_scale[t - 1] - gain * mean_scale[t], gain, variance


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_closed_form_is_gaussian_conditioning(schedule):
    s = make_schedule(schedule, 200)
    for t in range(2, s.T + 1):
        c0, ct, var = conditioned(s, t)
        # m(x_t, x_0, t) is linear: read its coefficients off unit inputs.
        assert posterior_mean(0.0, 1.0, t, s) == pytest.approx(c0, abs=1e-12)
        assert posterior_mean(1.0, 0.0, t, s) == pytest.approx(ct, abs=1e-12)
        assert s.beta_tilde[t] == pytest.approx(var, abs=1e-12)
    rng = np.random.default_rng(7)
    x0, x_t = rng.standard_normal((s.T, 2)), rng.standard_normal((s.T, 2))
    t = np.arange(1, s.T + 1)
    mean, variance = posterior_by_conditioning(x_t, x0, t, s)
    np.testing.assert_allclose(mean, posterior_mean(x_t, x0, t, s), atol=1e-12)
    np.testing.assert_allclose(variance[:, 0], s.beta_tilde[1:], atol=1e-12)


def test_transcribed_posterior_coefficients_are_wrong():
    s = ho_schedule(200)
    t = np.arange(2, s.T + 1)
    ab, ab_prev, beta = s.alpha_bar[t], s.alpha_bar[t - 1], s.beta[t]
    right = np.sqrt(ab_prev) * beta / (1 - ab)
    sheet = np.sqrt(ab_prev * beta) / (1 - ab)  # ERRATA G-1.10.3-12
    assert np.abs(sheet - right).max() > 5.0  # CHECKS.md: off by about 5.6
    sheet_tilde = (1 - ab_prev * beta) / (1 - ab)
    assert np.abs(sheet_tilde - s.beta_tilde[t]).max() > 1.0


def test_epsilon_form_of_the_posterior_mean():
    s = ho_schedule(200)
    rng = np.random.default_rng(7)
    x0, eps = rng.standard_normal((s.T, 3)), rng.standard_normal((s.T, 3))
    t = np.arange(1, s.T + 1)
    x_t = q_sample(x0, t, s, eps)
    np.testing.assert_allclose(posterior_mean_eps(x_t, eps, t, s), posterior_mean(x_t, x0, t, s),
                               atol=1e-12)
    # With alpha_bar_t where alpha_t belongs (ERRATA A-1.10.3-13) it is far off.
    beta, ab = s.beta[t, None], s.alpha_bar[t, None]
    wrong = (x_t - beta / np.sqrt(1 - ab) * eps) / np.sqrt(ab)
    assert np.abs(wrong - posterior_mean(x_t, x0, t, s)).max() > 1.0


# ----------------------------------------------------------------------------------------------
# Reverse steps: exact with an exact ε, the right variance with the optimal one.


def test_reverse_steps_land_on_a_point_mass_with_its_exact_noise():
    s = linear_schedule(100)
    rng = np.random.default_rng(3)
    x0 = np.array([0.7, -1.2])
    exact_eps = lambda x, t: (x - math.sqrt(s.alpha_bar[t]) * x0) / math.sqrt(1 - s.alpha_bar[t])  # noqa: E731
    x = rng.standard_normal((50, 2))
    for t in range(s.T, 0, -1):
        x = ddpm_step(x, exact_eps(x, t), t, s, s.beta, rng.standard_normal(x.shape))
    np.testing.assert_allclose(x, np.broadcast_to(x0, x.shape), atol=1e-9)
    x = rng.standard_normal((50, 2))
    times = ddim_timesteps(s.T, 7) + [0]
    for t, t_prev in zip(times[:-1], times[1:], strict=True):
        x = ddim_step(x, exact_eps(x, t), t, t_prev, s)
    np.testing.assert_allclose(x, np.broadcast_to(x0, x.shape), atol=1e-9)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_sampling_gaussian_data_with_the_optimal_predictor(schedule):
    # CHECKS.md 1.10.3-j: for data N(0, s0^2) the optimal predictor is eps = c_t x_t with
    # c_t = sqrt(1 - ab_t) / (ab_t s0^2 + 1 - ab_t); the reverse chain then gives Var ~ s0^2.
    s, s0 = make_schedule(schedule, 200), 0.5
    ab = s.alpha_bar
    rng = np.random.default_rng(4)
    x = rng.standard_normal(100_000)
    for t in range(s.T, 0, -1):
        eps = math.sqrt(1 - ab[t]) / (ab[t] * s0**2 + 1 - ab[t]) * x
        x = ddpm_step(x, eps, t, s, s.beta, rng.standard_normal(x.shape))
    assert abs(x.var() / s0**2 - 1) < 0.05  # CHECKS.md 1.10.3-d: within 5 %
    assert abs(x.mean()) < 4 * s0 / math.sqrt(len(x))


def test_clipping_changes_nothing_inside_the_box_and_works_on_torch():
    s = cosine_schedule(100)
    rng = np.random.default_rng(5)
    x_t, eps, z = (rng.standard_normal((20, 2)) for _ in range(3))
    wide = (np.full(2, -1e9), np.full(2, 1e9))
    for t in (1, 2, 50, 100):
        plain = ddpm_step(x_t, eps, t, s, s.beta, z)
        np.testing.assert_allclose(ddpm_step(x_t, eps, t, s, s.beta, z, wide), plain, atol=1e-9)
        as_torch = ddpm_step(torch.from_numpy(x_t), torch.from_numpy(eps), t, s, s.beta,
                             torch.from_numpy(z), tuple(torch.from_numpy(b) for b in wide))
        np.testing.assert_allclose(as_torch.numpy(), plain, atol=1e-9)
    tight = (np.full(2, -0.1), np.full(2, 0.1))
    x0 = predict_x0(x_t, eps, 100, s)
    assert np.abs(x0).max() > 0.1  # so the clip bites
    out = ddim_step(x_t, eps, 100, 0, s, tight)  # t' = 0: exactly the clipped x0
    np.testing.assert_allclose(out, np.clip(x0, -0.1, 0.1), atol=1e-12)


def test_ddim_timesteps():
    assert ddim_timesteps(200, 50)[0] == 200 and ddim_timesteps(200, 50)[-1] == 1
    for T, steps in [(50, 2), (200, 50), (1000, 7), (100, 100), (1000, 999)]:
        times = ddim_timesteps(T, steps)
        assert len(times) == steps and times == sorted(set(times), reverse=True)
    with pytest.raises(ValueError, match="between 1 and T = 50"):
        ddim_timesteps(50, 51)
