r"""The theory of 1.3 checked on a surface and a start: each function runs what its theorem
is about (batched, float64) and returns a :class:`Check` (and what the chart draws).

* the update rules against ``torch.optim``, step for step (where the definitions coincide);
* GD with η = 1/L: the ε-critical bound (ERRATA A-1.3.2-4) on any surface, the linear rate
  (G-1.3.2-5) on the quadratic;
* Nesterov's rate bound, and the √κ speed-ups of heavy ball and Nesterov, on the quadratic;
* SGD on least squares: the variance formula V[θ](S) and the O(1/t) rate (G-1.3.4-7).

The tolerances follow CHECKS.md (1.3.2-e/f, 1.3.3-a to e, 1.3.4-a, 1.3.4-c). The √κ speed-ups
(not in CHECKS.md) must lie within a factor 2 of the prediction; measured, they are 0.66 to
0.93 times it for κ from 1.5 to 10⁴ (the double root of optimal heavy ball costs a factor t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from engine.core import Check
from engine.experiments.loss_surfaces import DTYPE, Surface, smoothness_on_box
from engine.experiments.optimizer_rules import (
    BatchedOptimizers,
    Coefficients,
    Rule,
    gradient_descent,
    heavy_ball_optimal,
    nesterov_optimal,
    predicted_rates,
    sgd_decaying,
    torch_comparable,
    torch_step,
    trajectories,
)

TORCH_STEPS = 100  # steps compared with torch.optim
TORCH_TOL = 1e-10  # relative deviation allowed from torch.optim
BOUND_SLACK = 1e-12  # relative slack of the rate bounds (round-off)
SPEEDUP_FACTOR = 2.0  # measured √κ speed-ups must lie within a factor 2 of the predicted
SPEEDUP_MIN_KAPPA = 4.0
VARIANCE_BATCHES = 20_000
SE_K = 4.0
SGD_CHAINS = 100
SGD_SLOPE_MAX = -0.8
OVERFLOW = 1e100  # a step beyond this, or to inf, counts as diverged


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def decimate(n: int, points: int = 300) -> np.ndarray:
    """About ``points`` indices in [1, n], log-spaced (for log-x charts of n steps)."""
    return np.unique(np.geomspace(1, n, points).round().astype(int))


def _compare_with_torch(rule: Rule, theta0: torch.Tensor, gradient, steps: int
                        ) -> tuple[float, int]:
    """(max relative deviation, steps compared) of one rule's steps against torch.optim's.

    The rule runs ``steps`` steps from θ₀; from each state it visits, one step of its
    torch.optim counterpart (:func:`torch_comparable`: δ = 0 where δ sits inside a decaying
    root) is compared with one step of the same counterpart in the engine. A diverging run is
    compared up to its first non-finite state; a 0/0 (δ = 0 and a zero gradient coordinate)
    must be NaN in both.
    """
    optimizer = BatchedOptimizers(Coefficients.stack([rule], device=theta0.device,
                                                     dtype=theta0.dtype), theta0[None], gradient)
    comparable = torch_comparable(rule)
    worst, compared = 0.0, 0
    for _ in range(steps):
        state = optimizer.state()
        if not all(torch.isfinite(x).all() for x in (state.theta, state.theta_prev)):
            break
        engine = BatchedOptimizers.resume(comparable, state, gradient)
        engine.step()
        mine = (engine.lookahead() if comparable.lookahead else engine.theta)[0, 0]
        theirs = torch_step(comparable, state, gradient)
        agree = torch.isnan(mine) & torch.isnan(theirs)  # a 0/0 in both
        mine, theirs = mine[~agree], theirs[~agree]
        if not (torch.isfinite(mine).all() and torch.isfinite(theirs).all()):
            if _overflows(mine) and _overflows(theirs):
                break  # both diverged at this step
            return math.inf, compared
        if mine.numel():
            scale = max(1.0, float(torch.linalg.vector_norm(theirs)))
            worst = max(worst, float(torch.linalg.vector_norm(mine - theirs)) / scale)
        compared += 1
        optimizer.step()
    return worst, compared


def _overflows(x: torch.Tensor) -> bool:
    return not bool(torch.isfinite(x).all()) or float(torch.linalg.vector_norm(x)) > OVERFLOW


def check_torch_agreement(
    surface: Surface, labels: list[str], rules: list[Rule], theta0: torch.Tensor, steps: int
) -> Check:
    r"""Each rule against ``torch.optim``, step by step, along its first ``steps`` steps from
    θ₀ on the exact gradient (see :func:`_compare_with_torch`).

    RMSprop and the sheet's Adam are compared at δ = 0, where the sheet's δ inside the root
    and torch's eps outside it coincide (AdaGrad at its δ, torch's initial accumulator); the
    sheet's Adam against torch's Adam with the learning rate η(1 − βᵗ)/√(1 − αᵗ), which is
    what a missing bias correction amounts to.
    """
    worst, parts = 0.0, []
    for label, rule in zip(labels, rules, strict=True):
        deviation, compared = _compare_with_torch(rule, theta0, surface.grad, steps)
        worst = max(worst, deviation)
        parts.append(f"{label} {deviation:.1e}"
                     + (f" ({compared} steps, then it diverged)" if compared < steps else ""))
    return Check(
        name="Update rules = torch.optim, step for step",
        formula=r"\max_{t < T} \frac{\|\theta_{t+1} - \theta_{t+1}^{\mathrm{torch}}\|}"
                r"{\max(1, \|\theta_{t+1}^{\mathrm{torch}}\|)}",
        measured=worst,
        reference=TORCH_TOL,
        relation="<=",
        passed=worst <= TORCH_TOL,
        detail=f"every step t < T = {steps} from θ₀ on the exact gradient, torch.optim's step "
        "from the engine's state against the engine's: " + ", ".join(parts)
        + ". torch.optim: SGD (GD; LambdaLR for the decaying step), SGD(momentum=β, "
        "dampening=0) for heavy ball, SGD(nesterov=True) whose parameter is the look-ahead "
        "θ_t + β(θ_t − θ_{t−1}), Adam, Adagrad(eps=0, initial_accumulator_value=δ). RMSprop "
        "and Adam as printed are compared at δ = 0: the sheet puts δ inside the root, torch its "
        "eps outside. Adam as printed has no "
        "bias correction (ERRATA A-1.3.3-6): it equals Adam(eps=0) only with the learning rate "
        "η(1 − βᵗ)/√(1 − αᵗ), (1 − β)/√(1 − α) ≈ 3.16 η at t = 1 for β = 0.9, α = 0.999.",
    )


@dataclass(frozen=True)
class TheoryRun:
    """GD with η = 1/L from θ₀: its path (T + 1, 2), gaps (T + 1,), gradient norms (T + 1,)."""

    L: float
    path: torch.Tensor
    gaps: torch.Tensor
    grad_norms: torch.Tensor


def check_eps_critical(surface: Surface, theta0: torch.Tensor, steps: int
                       ) -> tuple[Check, TheoryRun, dict[str, np.ndarray]]:
    r""":math:`\min_{\tau<t}\|\nabla h(\theta_\tau)\| \le \sqrt{2L(h_0 - \min h)/t}` at every t
    for GD with η = 1/L, i.e. ε is reached once :math:`t \ge 2L(h_0 - \min h)/\varepsilon^2`."""
    smooth = smoothness_on_box(surface, theta0)
    L = smooth.L
    path = trajectories([gradient_descent(1.0 / L)], theta0[None], surface.grad, steps)[0, 0]
    gaps = surface.gap(path)
    grad_norms = torch.linalg.vector_norm(surface.grad(path), dim=1)
    gap0 = float(gaps[0])
    t = torch.arange(1, steps + 1, dtype=DTYPE, device=path.device)
    best = torch.cummin(grad_norms[:-1], dim=0).values  # min_{τ<t}, t = 1..T
    eps_t = torch.sqrt(2 * L * gap0 / t)
    ratio = torch.where(best == 0, torch.zeros_like(best), best / eps_t)
    k = int(ratio.argmax())
    worst = float(ratio[k])
    x_min, x_max, y_min, y_max = smooth.box
    # A quadratic is L-smooth everywhere; elsewhere L holds on the box only.
    inside = surface.A is not None or bool(
        ((path[:, 0] >= x_min) & (path[:, 0] <= x_max) & (path[:, 1] >= y_min)
         & (path[:, 1] <= y_max)).all())
    eps_T = float(eps_t[-1])
    reached = (best <= eps_T).nonzero()
    reached_at = int(reached[0, 0]) + 1 if reached.numel() else None
    if surface.A is not None:
        where = f"L = {L:.4g}, exact (the largest eigenvalue of A)"
    else:
        box = ", ".join(f"{v:.3g}" for v in smooth.box)
        where = (f"L = {L:.4g} = max ‖∇²h‖₂ on the box [{box}] around the sublevel set "
                 f"{{h ≤ h(θ₀)}} (257² grid, +5 %)"
                 + ("; the set reaches beyond the searched region" if smooth.clipped else "")
                 + ("; every iterate stayed in the box" if inside
                    else "; GD LEFT the box, so L does not hold along its path"))
    check = Check(
        name="ε-critical point within 2L(h₀ − min h)/ε² steps (GD, η = 1/L)",
        formula=r"\max_{t \le T} \frac{\min_{\tau < t}\|\nabla h(\theta_\tau)\|}"
                r"{\sqrt{2L(h(\theta_0) - \min h)/t}} \le 1",
        measured=worst,
        reference=1.0,
        relation="<=",
        passed=worst <= 1.0 and inside,
        detail=f"{where}; h₀ − min h = {gap0:.4g}. Tightest at t = {k + 1}. For example "
        f"ε = {eps_T:.3g} is guaranteed by t = {steps} and was reached at t = "
        f"{reached_at if reached_at is not None else 'never'}. ERRATA A-1.3.2-4: the sheet's "
        "Δt = 2L(h₀ − min h)/ε holds only for ‖∇h‖² ≤ ε; for ‖∇h‖ ≤ ε it is "
        "t ≥ 2L(h₀ − min h)/ε².",
    )
    idx = decimate(steps)
    curves = {"t": idx.astype(np.float64), "best": _np(best[idx - 1]),
              "bound": _np(eps_t[idx - 1])}
    return check, TheoryRun(L, path, gaps, grad_norms), curves


def check_linear_rate(surface: Surface, gd: TheoryRun) -> tuple[Check, np.ndarray]:
    r""":math:`h(\theta_t) - \min h \le (1 - \mu/L)^t (h_0 - \min h)` for GD with η = 1/L."""
    mu, L = surface.mu, surface.L
    gaps = gd.gaps
    gap0 = float(gaps[0])
    t = torch.arange(gaps.shape[0], dtype=DTYPE, device=gaps.device)
    bound = (1 - mu / L) ** t * gap0
    ratio = gaps[1:] / (bound[1:] + BOUND_SLACK * gap0) if gap0 > 0 else torch.zeros_like(t[1:])
    k = int(ratio.argmax()) + 1
    alive = (gaps > 1e-200 * gap0).nonzero()
    t1 = int(alive[-1, 0]) if alive.numel() else 0
    rate = (float(gaps[t1]) / gap0) ** (1 / t1) if t1 > 0 else 0.0
    check = Check(
        name="Linear rate of GD (η = 1/L) on the quadratic",
        formula=r"\max_t \frac{h(\theta_t) - \min h}{(1 - \mu/L)^t\,(h(\theta_0) - \min h)}"
                r" \le 1",
        measured=float(ratio[k - 1]),
        reference=1.0,
        relation="<=",
        passed=float(ratio[k - 1]) <= 1.0,
        detail=f"μ = {mu:.4g}, L = {L:.4g}, slack {BOUND_SLACK:g}·h₀; tightest at t = {k}. "
        f"Measured rate (h_t/h₀)^(1/t) = {rate:.4g} against 1 − μ/L = {1 - mu / L:.4g} "
        "(on a quadratic GD contracts h by (1 − μ/L)² per step, so the bound is loose). "
        "ERRATA G-1.3.2-5 drops the sheet's stray Δ.",
    )
    return check, _np(bound)


def check_nesterov_bound(surface: Surface, theta0: torch.Tensor, steps: int
                         ) -> tuple[Check, np.ndarray, np.ndarray, np.ndarray]:
    r"""Nesterov (2004, Thm 2.2.3) with η = 1/L, β = (√κ − 1)/(√κ + 1):
    :math:`h_t - h^* \le (1 - 1/\sqrt\kappa)^t (h_0 - h^* + \frac\mu2\|\theta_0 - \theta^*\|^2)`.
    Also returns the gaps of that run and of heavy ball with its optimal parameters."""
    mu, L = surface.mu, surface.L
    paths = trajectories([nesterov_optimal(mu, L), heavy_ball_optimal(mu, L)], theta0[None],
                         surface.grad, steps)[:, 0]
    gaps = surface.gap(paths)  # (2, T + 1)
    gap0 = float(gaps[0, 0])
    d0 = float(surface.distance(theta0))
    t = torch.arange(steps + 1, dtype=DTYPE, device=gaps.device)
    start = gap0 + mu / 2 * d0**2
    bound = (1 - math.sqrt(mu / L)) ** t * start
    ratio = gaps[0, 1:] / (bound[1:] + BOUND_SLACK * start) if start > 0 else t[1:] * 0
    k = int(ratio.argmax()) + 1
    check = Check(
        name="Nesterov's rate bound (η = 1/L, optimal β)",
        formula=r"h(\theta_t) - \min h \le \left(1 - \sqrt{\mu/L}\right)^t \left(h(\theta_0) "
                r"- \min h + \frac\mu2\|\theta_0 - \theta^*\|^2\right)",
        measured=float(ratio[k - 1]),
        reference=1.0,
        relation="<=",
        passed=float(ratio[k - 1]) <= 1.0,
        detail=f"max ratio of h_t − min h to the bound, at t = {k}; "
        f"β = {nesterov_optimal(mu, L).lookahead:.4g}; Nesterov (2004), Thm 2.2.3.",
    )
    return check, _np(gaps[0]), _np(bound), _np(gaps[1])


def check_speedups(surface: Surface) -> list[Check]:
    r"""Heavy ball and Nesterov with their optimal parameters against GD (η = 1/L).

    The worst case of a linear iteration over starts is along an eigenvector of A, so each
    method runs from θ* + v_μ and θ* + v_L for the window T in which heavy ball should gain
    10 decades; its rate is :math:`\hat\rho = \max(\|e_T\|/\|e_0\|)^{1/T}` and its speed-up
    over GD :math:`\ln\hat\rho / \ln\hat\rho_{GD}`, to be compared with the predicted
    :math:`\ln\rho / \ln(1 - 1/\kappa)`: about :math:`2\sqrt\kappa` for heavy ball and
    :math:`\sqrt\kappa` for Nesterov, against GD's κ steps per e-fold.
    """
    mu, L = surface.mu, surface.L
    kappa = L / mu
    rho = predicted_rates(mu, L)
    window = max(20, math.ceil(math.log(1e-10) / math.log(rho["heavy_ball"])))
    _, evecs = torch.linalg.eigh(surface.A)
    center = surface.minima[0]
    starts = center + evecs.T  # (2, 2): θ* + v_μ, θ* + v_L
    rules = [gradient_descent(1.0 / L), heavy_ball_optimal(mu, L), nesterov_optimal(mu, L)]
    final = BatchedOptimizers(Coefficients.stack(rules, device=starts.device), starts,
                              surface.grad).run(window)[:, :, -1]  # (3, 2, 2)
    shrink = torch.linalg.vector_norm(final - center, dim=-1).max(dim=1).values  # (3,)
    measured_rate = shrink ** (1.0 / window)
    checks = []
    for k, (key, label, name) in enumerate(
        [("heavy_ball", "heavy ball", r"\beta = \left(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}"
                                      r"\right)^2"),
         ("nesterov", "Nesterov", r"\beta = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}")], start=1,
    ):
        speedup = math.log(float(measured_rate[k])) / math.log(float(measured_rate[0]))
        predicted = math.log(rho[key]) / math.log(rho["gd"])
        ratio = speedup / predicted
        checks.append(Check(
            name=f"{label} (optimal) beats GD by ≈ {'2' if k == 1 else ''}√κ",
            formula=r"\frac{\ln\hat\rho}{\ln\hat\rho_{\mathrm{GD}}} \approx "
                    r"\frac{\ln\rho}{\ln(1 - 1/\kappa)},\ " + name,
            measured=speedup,
            reference=predicted,
            relation=f"≈ (×{SPEEDUP_FACTOR:g})",
            passed=1 / SPEEDUP_FACTOR <= ratio <= SPEEDUP_FACTOR,
            detail=f"κ = {kappa:.4g}, √κ = {math.sqrt(kappa):.4g}. Worst rate over the "
            f"eigenvector starts in T = {window} steps: {label} {float(measured_rate[k]):.5f} "
            f"(predicted {rho[key]:.5f}), GD {float(measured_rate[0]):.5f} (predicted "
            f"{rho['gd']:.5f}); speed-up {speedup:.3g} = {ratio:.2f} × predicted.",
        ))
    return checks


def check_sgd_variance(surface: Surface, theta0: torch.Tensor, batch: int,
                       generator: torch.Generator) -> Check:
    r""":math:`\mathbb E\|g_B - \nabla h\|^2 = V[\theta](S)/b` at θ₀ over 20,000 minibatches."""
    data = surface.data
    V = data.variance(theta0)
    g = data.per_sample_grads(theta0)  # (s, 2)
    full = g.mean(dim=0)
    idx = torch.randint(data.s, (VARIANCE_BATCHES, batch), generator=generator,
                        device=theta0.device)
    spread = ((g[idx].mean(dim=1) - full) ** 2).sum(dim=1)  # (N,)
    mean = float(spread.mean())
    se = float(spread.std() / math.sqrt(VARIANCE_BATCHES))
    expected = V / batch
    return Check(
        name="SGD variance: E‖g_B − ∇h‖² = V[θ](S)/b",
        formula=r"V[\theta](S) = \frac1s\sum_{i=1}^s\|\nabla h[\theta](S) - "
                r"\nabla h[\theta](x_i, y_i)\|^2",
        measured=mean,
        reference=expected,
        relation=f"≈ ({SE_K:g} SE)",
        passed=abs(mean - expected) <= SE_K * se + 1e-12 * (1 + expected),
        detail=f"at θ₀, V = {V:.5g}, b = {batch}, s = {data.s}; {VARIANCE_BATCHES} minibatches "
        f"drawn with replacement; mean {mean:.5g} ± {se:.2g} (SE), "
        f"|difference| = {abs(mean - expected) / max(se, 1e-300):.2f} SE.",
    )


def check_sgd_rate(surface: Surface, theta0: torch.Tensor, batch: int,
                   generator: torch.Generator) -> tuple[Check, dict[str, np.ndarray]]:
    r"""The log-log slope of :math:`\mathbb E[h(\theta_t)] - \min h` for SGD with
    :math:`\eta_t = 1/(\mu(t + t_0))`, t₀ = ⌈κ⌉ (so η₀ = 1/L), over 100 chains from θ₀, at
    t₁, 4t₁, 16t₁ with t₁ = max(250, 4t₀): at most −0.8 (Bottou, Curtis & Nocedal 2018,
    Thm 4.7: O(1/t))."""
    mu, L = surface.mu, surface.L
    t0 = math.ceil(L / mu - 1e-9)  # κ up to round-off
    t1 = max(250, 4 * t0)
    checkpoints = [t1, 4 * t1, 16 * t1]
    T = checkpoints[-1]
    data = surface.data
    optimizers = BatchedOptimizers(
        Coefficients.stack([sgd_decaying(1.0 / (mu * t0), t0)], device=theta0.device),
        theta0.expand(SGD_CHAINS, 2),
        lambda theta: data.minibatch_grad(theta, batch, generator),
    )
    drawn = set(decimate(T, 60).tolist())
    ts, means = [], []
    for t in range(1, T + 1):
        theta = optimizers.step()
        if t in drawn or t in checkpoints:
            ts.append(t)
            means.append(float(surface.gap(theta).mean()))
    ts_np, means_np = np.asarray(ts, dtype=np.float64), np.maximum(means, 1e-300)
    at = np.searchsorted(ts_np, checkpoints)
    log_t, log_h = np.log(ts_np[at]), np.log(means_np[at])
    slope, intercept = np.polyfit(log_t, log_h, 1)
    check = Check(
        name="SGD: E[h(θ_t)] − min h = O(1/t) (strongly convex, smooth)",
        formula=r"\frac{d\ln(\mathbb{E}[h(\theta_t)] - \min h)}{d\ln t} \le -0.8",
        measured=float(slope),
        reference=SGD_SLOPE_MAX,
        relation="<=",
        passed=float(slope) <= SGD_SLOPE_MAX,
        detail=f"{SGD_CHAINS} chains from θ₀, η_t = 1/(μ(t + t₀)), t₀ = {t0}, batch {batch}; "
        f"slope fitted at t = {checkpoints} to the mean gaps "
        + ", ".join(f"{m:.3g}" for m in means_np[at])
        + " (O(1/t) predicts −1; ERRATA G-1.3.4-7: the rate is for strongly convex and smooth h).",
    )
    curves = {"t": ts_np, "mean": means_np, "fit": np.exp(intercept) * ts_np**slope}
    return check, curves
