r"""1.10.3 Denoising diffusion: noise schedules, the forward marginal, the posterior, reverse steps.

The cheat sheet, corrected per ERRATA.md (A-1.10.3-11, G-1.10.3-12, A-1.10.3-13):

* forward step :math:`x_t \mid x_{t-1} \sim \mathcal N(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)`,
  :math:`\alpha_t := 1-\beta_t`, :math:`\bar\alpha_t = \prod_{\tau\le t}\alpha_\tau`, and
  exactly, for every t,

  .. math:: x_t \mid x_0 \sim \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I\big);

* the forward-trajectory target :math:`x_{t-1} \mid x_t, x_0 \sim \mathcal N(m, \tilde\beta_t I)`,

  .. math:: m(x_t, x_0, t) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
            + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\qquad
            \tilde\beta_t = \frac{(1-\bar\alpha_{t-1})\,\beta_t}{1-\bar\alpha_t};

* with :math:`x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}` the same mean
  in the ε-parameterisation, :math:`m = \frac1{\sqrt{\alpha_t}}\big(x_t -
  \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\varepsilon\big)` (α_t, not ᾱ_t).

References: Ho, Jain & Abbeel, *Denoising Diffusion Probabilistic Models* (2020), eqs. 4, 6,
7, 11; Nichol & Dhariwal, *Improved DDPM* (2021), §3.2 (cosine schedule, and the linear
schedule scaled by 1000/T); Song, Meng & Ermon, *DDIM* (2021), eq. 12 with σ = 0.

Arrays are indexed by t itself, 0 … T (t = 0 being the data: β_0 = 0, ᾱ_0 = 1), so the code
reads like the formulas. Everything here is float64 numpy; the step functions take numpy
arrays or torch tensors alike, with the coefficients as Python floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SCHEDULES = ("linear", "cosine")
COSINE_OFFSET = 0.008  # s of Nichol & Dhariwal: keeps β_1 from being vanishingly small
BETA_MAX = 0.999  # their clip of the cosine schedule's last β_t (ᾱ_T would be exactly 0)


@dataclass(frozen=True)
class Schedule:
    """A noise schedule: ``beta[t]``, ``alpha[t]``, ``alpha_bar[t]``, ``beta_tilde[t]``, t = 0…T."""

    name: str
    beta: np.ndarray  # (T+1,), beta[0] = 0

    @property
    def T(self) -> int:
        return len(self.beta) - 1

    @property
    def alpha(self) -> np.ndarray:
        return 1.0 - self.beta

    @property
    def alpha_bar(self) -> np.ndarray:
        return np.cumprod(self.alpha)  # alpha_bar[0] = 1

    @property
    def beta_tilde(self) -> np.ndarray:
        r""":math:`\tilde\beta_t = (1-\bar\alpha_{t-1})\beta_t/(1-\bar\alpha_t)`; 0 at t = 0, 1."""
        alpha_bar = self.alpha_bar
        out = np.zeros_like(self.beta)
        out[1:] = (1.0 - alpha_bar[:-1]) * self.beta[1:] / (1.0 - alpha_bar[1:])
        return out


def linear_schedule(T: int) -> Schedule:
    r"""β_t linear from 0.1/T to 20/T: Ho et al.'s 1e-4 … 0.02 at T = 1000, scaled by 1000/T
    (Nichol & Dhariwal) so that :math:`\sum_t\beta_t \approx 10` and ᾱ_T ≈ e⁻¹⁰ for every T."""
    if T < 50:
        raise ValueError(f"the linear schedule needs T >= 50 (β_T = 20/T <= 0.4), got {T}")
    return Schedule("linear", np.concatenate([[0.0], np.linspace(0.1 / T, 20.0 / T, T)]))


def cosine_schedule(T: int, s: float = COSINE_OFFSET) -> Schedule:
    r""":math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\big(\frac{t/T+s}{1+s}\frac\pi2\big)`,
    :math:`\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}` clipped at 0.999."""
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    beta = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], BETA_MAX)
    return Schedule("cosine", np.concatenate([[0.0], beta]))


def make_schedule(name: str, T: int) -> Schedule:
    if name == "linear":
        return linear_schedule(T)
    if name == "cosine":
        return cosine_schedule(T)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def _at(coefficients: np.ndarray, t: Any, x: Any) -> Any:
    """coefficients[t] shaped to broadcast against x: a float for a scalar t, else (N, 1, …)."""
    if np.ndim(t) == 0:
        return float(coefficients[int(t)])
    c = coefficients[np.asarray(t)]
    return c.reshape(c.shape + (1,) * (np.ndim(x) - c.ndim))


def forward_step(x_prev: Any, t: int, s: Schedule, noise: Any) -> Any:
    r"""One forward step :math:`x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,z`."""
    return math.sqrt(1.0 - s.beta[t]) * x_prev + math.sqrt(s.beta[t]) * noise


def q_sample(x0: Any, t: Any, s: Schedule, eps: Any) -> Any:
    r"""Closed form :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon`."""
    return _at(np.sqrt(s.alpha_bar), t, x0) * x0 + _at(np.sqrt(1.0 - s.alpha_bar), t, x0) * eps


def predict_x0(x_t: Any, eps: Any, t: Any, s: Schedule) -> Any:
    r""":math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}`."""
    root = np.sqrt(s.alpha_bar)
    return (x_t - _at(np.sqrt(1.0 - s.alpha_bar), t, x_t) * eps) / _at(root, t, x_t)


def posterior_mean(x_t: Any, x0: Any, t: Any, s: Schedule) -> Any:
    r"""The closed form :math:`m(x_t, x_0, t)` of G-1.10.3-12 (t >= 1)."""
    alpha_bar = s.alpha_bar
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):  # t = 0 has no posterior
        c0 = np.sqrt(alpha_bar_prev) * s.beta / (1.0 - alpha_bar)
        ct = np.sqrt(s.alpha) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    return _at(c0, t, x0) * x0 + _at(ct, t, x_t) * x_t


def posterior_mean_eps(x_t: Any, eps: Any, t: Any, s: Schedule) -> Any:
    r"""The ε-form :math:`m = \big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\varepsilon\big)/
    \sqrt{\alpha_t}` of A-1.10.3-13 (t >= 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c_eps = s.beta / np.sqrt(1.0 - s.alpha_bar)
    return (x_t - _at(c_eps, t, eps) * eps) / _at(np.sqrt(s.alpha), t, x_t)


def posterior_by_conditioning(x_t: Any, x0: Any, t: Any, s: Schedule) -> tuple[Any, Any]:
    r"""Mean and variance of :math:`x_{t-1}\mid x_t, x_0` by conditioning the joint Gaussian.

    Given x_0, :math:`x_{t-1}` has mean :math:`\sqrt{\bar\alpha_{t-1}}x_0` and variance
    :math:`v = 1-\bar\alpha_{t-1}`, :math:`x_t` has mean :math:`\sqrt{\bar\alpha_t}x_0` and
    variance :math:`1-\bar\alpha_t`, and their covariance is :math:`\sqrt{\alpha_t}\,v`; so
    the conditional mean is :math:`\sqrt{\bar\alpha_{t-1}}x_0 + \frac{\sqrt{\alpha_t}v}
    {1-\bar\alpha_t}(x_t-\sqrt{\bar\alpha_t}x_0)` and the variance
    :math:`v - \alpha_t v^2/(1-\bar\alpha_t)`. No β̃ or m formula is used: this is the
    reference the closed forms are checked against.
    """
    alpha_bar = s.alpha_bar
    v = 1.0 - np.concatenate([[1.0], alpha_bar[:-1]])  # Var(x_{t-1} | x_0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.sqrt(s.alpha) * v / (1.0 - alpha_bar)
        variance = v - s.alpha * v**2 / (1.0 - alpha_bar)
    mean = (
        _at(np.sqrt(1.0 - v), t, x0) * x0
        + _at(gain, t, x_t) * (x_t - _at(np.sqrt(alpha_bar), t, x0) * x0)
    )
    return mean, _at(variance, t, x_t)


def ddpm_step(x_t: Any, eps: Any, t: int, s: Schedule, sigma2: np.ndarray, z: Any,
              clip: tuple[Any, Any] | None = None) -> Any:
    r"""One reverse step :math:`x_{t-1} = m_\theta(x_t, t) + \sigma_t z` (no noise at t = 1).

    Without ``clip`` :math:`m_\theta` is the ε-form. With ``clip = (lo, hi)`` the prediction
    :math:`\hat x_0` is clipped to the data's range first and :math:`m_\theta = m(x_t, \hat x_0,
    t)` by the closed form, which is the same mean whenever nothing is clipped.
    """
    if clip is None:
        mean = posterior_mean_eps(x_t, eps, t, s)
    else:
        mean = posterior_mean(x_t, _clip(predict_x0(x_t, eps, t, s), clip), t, s)
    return mean + math.sqrt(sigma2[t]) * z if t > 1 else mean


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` times from T down to 1, evenly spaced and distinct (then the data, t = 0)."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be between 1 and T = {T}, got {steps}")
    return sorted({round(t) for t in np.linspace(T, 1, steps)}, reverse=True)


def ddim_step(x_t: Any, eps: Any, t: int, t_prev: int, s: Schedule,
              clip: tuple[Any, Any] | None = None) -> Any:
    r"""Deterministic DDIM (η = 0): :math:`x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 +
    \sqrt{1-\bar\alpha_{t'}}\,\hat\varepsilon` with :math:`t' < t`, :math:`\hat x_0` from the
    ε-prediction (clipped with ``clip``, and then ε̂ recomputed so the two stay consistent)."""
    x0 = predict_x0(x_t, eps, t, s)
    if clip is not None:
        x0 = _clip(x0, clip)
        eps = (x_t - math.sqrt(s.alpha_bar[t]) * x0) / math.sqrt(1.0 - s.alpha_bar[t])
    a_prev = float(s.alpha_bar[t_prev])
    return math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps


def _clip(x: Any, clip: tuple[Any, Any]) -> Any:
    lo, hi = clip
    return np.clip(x, lo, hi) if isinstance(x, np.ndarray) else x.clamp(lo, hi)
