r"""The optimizers of 1.3 as one batched update, and their reference in ``torch.optim``.

Every optimizer of the cheat sheet (corrected per ERRATA.md A-1.3.3-6) is a special case of one
update with per-optimizer coefficients :math:`(\eta, a, b, \beta, c_1, \alpha, c_2, \delta_{in},
\delta_{out}, \nu)`. With :math:`\theta_{-1} = \theta_0`, :math:`m_0 = v_0 = 0`, step t = 1, 2, …:

.. math::

    \hat\theta &= \theta_t + a\,(\theta_t - \theta_{t-1}),\qquad g = \nabla h(\hat\theta) \\
    m &\leftarrow \beta m + c_1 g,\qquad v \leftarrow \alpha v + c_2\, g \odot g \\
    \theta_{t+1} &= \hat\theta - \frac{\eta}{1 + \nu (t-1)}\,
        \frac{m / (1 - \beta^t)^{[\mathrm{bc}]}}{\sqrt{v / (1 - \alpha^t)^{[\mathrm{bc}]}
        + \delta_{in}} + \delta_{out}} + b\,(\theta_t - \theta_{t-1})

=====================  ====================================================================
gradient descent       :math:`\theta_{t+1} = \theta_t - \eta\nabla h(\theta_t)` (m = g, v = 0)
heavy ball             b = β: :math:`+\beta(\theta_t - \theta_{t-1})`
Nesterov               a = β: the gradient at the look-ahead :math:`\hat\theta_{t+1}`
AdaGrad                α = c₂ = 1: :math:`\gamma^t = \gamma^{t-1} + g^2`,
                       :math:`\eta/\sqrt{\gamma^t + \delta}` (δ inside the root, as printed)
RMSprop                α, c₂ = 1 − α: the sheet's "Adam without momentum" (β = 0)
Adam                   Kingma & Ba (= ``torch.optim.Adam``): bias-corrected, δ outside the root
Adam as printed        no bias correction, δ inside the root (the sheet's formula)
SGD, decaying step     :math:`\eta_t = \eta/(1 + t/t_0)`, ν = 1/t₀
=====================  ====================================================================

So K optimizers × B start points (or hyper-parameter settings) are one state of shape
(K, B, 2) and each step is a dozen elementwise tensor operations, whatever the mix.

``torch.optim`` agrees step for step where the definitions coincide: ``SGD`` (GD, and with a
``LambdaLR`` schedule the decaying step), ``SGD(momentum=β, dampening=0)`` (heavy ball),
``SGD(nesterov=True)`` (its parameter is the sheet's look-ahead point
:math:`\theta_t + \beta(\theta_t - \theta_{t-1})`), ``Adam`` (Kingma & Ba), ``Adagrad(eps=0)``
with ``initial_accumulator_value`` = δ (the sheet's δ inside the root), ``RMSprop`` at δ = 0
(torch adds eps outside the root, the sheet δ inside), and the sheet's
Adam at δ = 0 equals ``Adam(eps=0)`` with the learning rate
:math:`\eta\,(1 - \beta^t)/\sqrt{1 - \alpha^t}`, which is 3.16 times η at t = 1 for
β = 0.9, α = 0.999 (the missing bias correction).

References: Polyak (1964); Nesterov (1983; 2004 §2.2); Duchi, Hazan & Singer (2011);
Tieleman & Hinton (2012); Kingma & Ba (2015); Goh, *Why Momentum Really Works*, Distill (2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch

DTYPE = torch.float64
Gradient = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """One optimizer as the coefficients of the common update (see the module docstring)."""

    eta: float
    lookahead: float = 0.0  # a
    heavy_ball: float = 0.0  # b
    beta: float = 0.0  # decay of the first moment m
    m_gain: float = 1.0  # c₁
    alpha: float = 0.0  # decay of the second moment v
    v_gain: float = 0.0  # c₂
    delta_in: float = 1.0  # under the root; with v = 0 the denominator is 1
    delta_out: float = 0.0
    bias_correction: bool = False
    decay: float = 0.0  # ν = 1/t₀


def gradient_descent(eta: float) -> Rule:
    r""":math:`\theta_{t+1} = \theta_t - \eta\nabla h(\theta_t)`."""
    return Rule(eta)


def heavy_ball(eta: float, beta: float) -> Rule:
    r""":math:`\theta_{t+1} = \theta_t - \eta\nabla h(\theta_t)
    + \beta(\theta_t - \theta_{t-1})`."""
    return Rule(eta, heavy_ball=beta)


def nesterov(eta: float, beta: float) -> Rule:
    r""":math:`\hat\theta_{t+1} = \theta_t + \beta(\theta_t - \theta_{t-1})`,
    :math:`\theta_{t+1} = \hat\theta_{t+1} - \eta\nabla h(\hat\theta_{t+1})`."""
    return Rule(eta, lookahead=beta)


def adagrad(eta: float, delta: float) -> Rule:
    r""":math:`\gamma^t = \gamma^{t-1} + g_t^2`, :math:`\theta_{t+1} = \theta_t -
    \frac{\eta}{\sqrt{\gamma^t + \delta}} g_t` (per coordinate)."""
    return Rule(eta, alpha=1.0, v_gain=1.0, delta_in=delta)


def rmsprop(eta: float, alpha: float, delta: float) -> Rule:
    r""":math:`\gamma^t = \alpha\gamma^{t-1} + (1-\alpha) g_t^2`, :math:`\theta_{t+1} =
    \theta_t - \frac{\eta}{\sqrt{\gamma^t + \delta}} g_t`: the sheet's Adam with β = 0."""
    return Rule(eta, alpha=alpha, v_gain=1.0 - alpha, delta_in=delta)


def adam(eta: float, beta: float, alpha: float, delta: float) -> Rule:
    r"""Kingma & Ba: :math:`\theta_{t+1} = \theta_t - \eta\,\hat g^t/(\sqrt{\hat\gamma^t} +
    \delta)`, :math:`\hat g^t = g^t/(1-\beta^t)`, :math:`\hat\gamma^t = \gamma^t/(1-\alpha^t)`."""
    return Rule(
        eta, beta=beta, m_gain=1.0 - beta, alpha=alpha, v_gain=1.0 - alpha, delta_in=0.0,
        delta_out=delta, bias_correction=True,
    )


def adam_as_printed(eta: float, beta: float, alpha: float, delta: float) -> Rule:
    r"""The sheet's Adam: :math:`\theta_{t+1} = \theta_t - \frac{\eta}{\sqrt{\gamma^t + \delta}}
    g^t` with the raw moments :math:`g^t, \gamma^t` (no bias correction)."""
    return Rule(eta, beta=beta, m_gain=1.0 - beta, alpha=alpha, v_gain=1.0 - alpha,
                delta_in=delta)


def sgd_decaying(eta: float, t0: float) -> Rule:
    r""":math:`\theta_{t+1} = \theta_t - \eta_t g_t` with :math:`\eta_t = \eta/(1 + t/t_0)`,
    t = 0, 1, …"""
    return Rule(eta, decay=1.0 / t0)


# ----------------------------------------------------------------------------------------------
# Optimal parameters on a quadratic with eigenvalues in [μ, L] (κ = L/μ).


def heavy_ball_optimal(mu: float, L: float) -> Rule:
    r"""Polyak: :math:`\eta = \frac{4}{(\sqrt L + \sqrt\mu)^2}`,
    :math:`\beta = \big(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}\big)^2`; rate
    :math:`\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}` per step."""
    sqrt_kappa = math.sqrt(L / mu)
    return heavy_ball(4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2,
                      ((sqrt_kappa - 1) / (sqrt_kappa + 1)) ** 2)


def nesterov_optimal(mu: float, L: float) -> Rule:
    r"""Nesterov (2004, §2.2.1): :math:`\eta = 1/L`,
    :math:`\beta = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}`; rate :math:`1 - 1/\sqrt\kappa`."""
    sqrt_kappa = math.sqrt(L / mu)
    return nesterov(1.0 / L, (sqrt_kappa - 1) / (sqrt_kappa + 1))


def predicted_rates(mu: float, L: float) -> dict[str, float]:
    r"""Worst-case contraction of :math:`\|\theta_t - \theta^*\|` per step on the quadratic:
    GD (η = 1/L) :math:`1 - 1/\kappa`, heavy ball :math:`\frac{\sqrt\kappa-1}{\sqrt\kappa+1}`,
    Nesterov :math:`1 - 1/\sqrt\kappa`."""
    sqrt_kappa = math.sqrt(L / mu)
    return {
        "gd": 1.0 - mu / L,
        "heavy_ball": (sqrt_kappa - 1) / (sqrt_kappa + 1),
        "nesterov": 1.0 - 1.0 / sqrt_kappa,
    }


# ----------------------------------------------------------------------------------------------
# The batched engine.


@dataclass(frozen=True)
class Coefficients:
    """The fields of :class:`Rule` as tensors broadcastable to (K, B, 1)."""

    eta: torch.Tensor
    lookahead: torch.Tensor
    heavy_ball: torch.Tensor
    beta: torch.Tensor
    m_gain: torch.Tensor
    alpha: torch.Tensor
    v_gain: torch.Tensor
    delta_in: torch.Tensor
    delta_out: torch.Tensor
    bias_correction: torch.Tensor  # 1.0 where bias-corrected, else 0.0
    decay: torch.Tensor

    @classmethod
    def stack(cls, rules: Sequence[Rule] | Sequence[Sequence[Rule]], device=None,
              dtype=DTYPE) -> Coefficients:
        """K rules (one setting per optimizer: (K, 1, 1)) or K lists of B rules ((K, B, 1))."""
        nested = [list(r) if isinstance(r, Sequence) else [r] for r in rules]
        if len({len(r) for r in nested}) != 1:
            raise ValueError("every optimizer needs the same number of settings")
        values = {
            f.name: torch.tensor(
                [[float(getattr(rule, f.name)) for rule in row] for row in nested],
                dtype=dtype, device=device,
            )[..., None]
            for f in fields(Rule)
        }
        return cls(**values)


@dataclass(frozen=True)
class OptimizerState:
    """One trajectory after t steps: θ_t, θ_{t−1}, the moments m and v (each (2,))."""

    t: int
    theta: torch.Tensor
    theta_prev: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor


class BatchedOptimizers:
    r"""K optimizers × B trajectories of the common update, stepped together.

    ``theta0`` is (B, 2) (the same starts for every optimizer) or (K, B, 2), or (1, 2) with
    coefficients (K, B, 1) (one start for B settings); ``gradient`` maps points (K, B, 2) to
    gradients (K, B, 2) (it may add minibatch noise).
    """

    def __init__(self, coefficients: Coefficients, theta0: torch.Tensor, gradient: Gradient):
        c = coefficients
        K, B = c.eta.shape[0], max(c.eta.shape[1], theta0.shape[-2])
        self.c = c
        self.gradient = gradient
        self.theta = theta0.expand(K, B, 2).clone()  # (K, B, 2)
        self.theta_prev = self.theta.clone()
        self.m = torch.zeros_like(self.theta)
        self.v = torch.zeros_like(self.theta)
        self.t = 0
        # β^t and α^t, for the bias correction.
        self.beta_t = torch.ones_like(c.beta)
        self.alpha_t = torch.ones_like(c.alpha)
        self.corrects = bool(c.bias_correction.any())
        self.decays = bool(c.decay.any())

    def state(self, k: int = 0, b: int = 0) -> OptimizerState:
        """A copy of trajectory (k, b)'s state."""
        return OptimizerState(self.t, *(x[k, b].clone() for x in
                                        (self.theta, self.theta_prev, self.m, self.v)))

    @classmethod
    def resume(cls, rule: Rule, state: OptimizerState, gradient: Gradient) -> BatchedOptimizers:
        """One trajectory of ``rule`` that goes on from ``state``."""
        theta = state.theta
        optimizer = cls(Coefficients.stack([rule], device=theta.device, dtype=theta.dtype),
                        theta[None], gradient)
        optimizer.theta_prev = state.theta_prev.clone()[None, None]
        optimizer.m, optimizer.v = state.m.clone()[None, None], state.v.clone()[None, None]
        optimizer.t = state.t
        optimizer.beta_t = optimizer.beta_t * rule.beta**state.t
        optimizer.alpha_t = optimizer.alpha_t * rule.alpha**state.t
        return optimizer

    def lookahead(self) -> torch.Tensor:
        r"""The point :math:`\hat\theta = \theta_t + a(\theta_t - \theta_{t-1})` of the next
        gradient."""
        return torch.addcmul(self.theta, self.c.lookahead, self.theta - self.theta_prev)

    def step(self) -> torch.Tensor:
        """One step of every trajectory; returns θ_{t+1} (K, B, 2)."""
        c = self.c
        diff = self.theta - self.theta_prev  # θ_t − θ_{t−1}
        y = torch.addcmul(self.theta, c.lookahead, diff)  # θ̂
        g = self.gradient(y)
        self.m.mul_(c.beta).addcmul_(c.m_gain, g)
        self.v.mul_(c.alpha).addcmul_(c.v_gain, g * g)
        m, v = self.m, self.v
        if self.corrects:
            self.beta_t = self.beta_t * c.beta
            self.alpha_t = self.alpha_t * c.alpha
            m = m / (1 - c.bias_correction * self.beta_t)
            v = v / (1 - c.bias_correction * self.alpha_t)
        eta = c.eta / (1 + c.decay * self.t) if self.decays else c.eta
        denominator = torch.sqrt(v + c.delta_in).add_(c.delta_out)
        new = y.addcmul_(c.heavy_ball, diff).sub_(eta * m / denominator)
        self.theta_prev, self.theta = self.theta, new
        self.t += 1
        return new

    def run(self, steps: int) -> torch.Tensor:
        """``steps`` steps; returns the whole path (K, B, steps + 1, 2), θ₀ first."""
        path = [self.theta.clone()]
        for _ in range(steps):
            path.append(self.step().clone())
        return torch.stack(path, dim=2)


def trajectories(rules: Sequence[Rule], theta0: torch.Tensor, gradient: Gradient,
                 steps: int) -> torch.Tensor:
    """Paths (K, B, steps + 1, 2) of K rules from the starts ``theta0`` (B, 2)."""
    coefficients = Coefficients.stack(rules, device=theta0.device, dtype=theta0.dtype)
    return BatchedOptimizers(coefficients, theta0, gradient).run(steps)


def is_adagrad(rule: Rule) -> bool:
    return rule.alpha == 1 and rule.v_gain == 1 and rule.beta == 0 and rule.m_gain == 1


def torch_comparable(rule: Rule) -> Rule:
    """The rule with δ = 0 where the sheet puts δ inside the root of a decaying average (RMSprop,
    Adam as printed): only there does it coincide with torch.optim, whose eps sits outside.
    AdaGrad needs no change: its δ is torch's ``initial_accumulator_value``."""
    if rule.v_gain and not rule.bias_correction and not is_adagrad(rule):
        return replace(rule, delta_in=0.0)
    return rule


# ----------------------------------------------------------------------------------------------
# The same optimizers in torch.optim, one step (one Python call) at a time.


def torch_optimizer(rule: Rule, param: torch.Tensor):
    """The ``torch.optim`` optimizer (and LR scheduler, or None) that coincides with ``rule``.

    AdaGrad's δ inside the root is torch's ``initial_accumulator_value``; RMSprop and the sheet's
    Adam need δ = 0 (δ inside the root of a decaying average has no torch counterpart). Raises
    ValueError otherwise, and for rules outside the sheet's list.
    """
    optim = torch.optim
    plain = rule.v_gain == 0 and rule.beta == 0 and rule.m_gain == 1
    if plain and rule.lookahead == 0 and rule.heavy_ball == 0:
        opt = optim.SGD([param], lr=rule.eta)
        if rule.decay:
            t0 = 1.0 / rule.decay
            return opt, optim.lr_scheduler.LambdaLR(opt, lambda k: t0 / (t0 + k))
        return opt, None
    if plain and rule.decay == 0 and rule.lookahead == 0:
        return optim.SGD([param], lr=rule.eta, momentum=rule.heavy_ball, dampening=0.0), None
    if plain and rule.decay == 0 and rule.heavy_ball == 0:
        return optim.SGD([param], lr=rule.eta, momentum=rule.lookahead, nesterov=True), None
    adaptive = rule.lookahead == 0 and rule.heavy_ball == 0 and rule.decay == 0
    if adaptive and rule.bias_correction and rule.delta_in == 0:
        betas = (rule.beta, rule.alpha)
        return optim.Adam([param], lr=rule.eta, betas=betas, eps=rule.delta_out), None
    if adaptive and is_adagrad(rule) and rule.delta_out == 0:
        # √(γᵗ + δ) with γᵗ = Σ g²: torch's accumulator started at δ instead of 0.
        return optim.Adagrad([param], lr=rule.eta, eps=0.0,
                             initial_accumulator_value=rule.delta_in), None
    if adaptive and rule.delta_in != 0:
        raise ValueError("δ inside the square root of a decaying average has no torch.optim "
                         "counterpart; use δ = 0")
    if adaptive and rule.beta == 0 and rule.m_gain == 1:
        return optim.RMSprop([param], lr=rule.eta, alpha=rule.alpha, eps=0.0), None
    if adaptive and rule.m_gain == 1 - rule.beta:
        opt = optim.Adam([param], lr=rule.eta, betas=(rule.beta, rule.alpha), eps=0.0)
        beta, alpha = rule.beta, rule.alpha
        # The sheet's raw moments: η m/√v = η (1 − βᵗ)/√(1 − αᵗ) · m̂/√v̂ (LambdaLR's k = t − 1).
        return opt, optim.lr_scheduler.LambdaLR(
            opt, lambda k: (1 - beta ** (k + 1)) / math.sqrt(1 - alpha ** (k + 1))
        )
    raise ValueError(f"no torch.optim counterpart for {rule}")


def torch_reference(rule: Rule, theta0: torch.Tensor, gradient: Gradient,
                    steps: int) -> torch.Tensor:
    """The path (steps + 1, 2) of ``torch.optim``'s parameter from ``theta0`` (2,), one step per
    call, fed the gradient ``gradient(p)`` of the current parameter. For Nesterov that parameter
    is the look-ahead point (see the module docstring)."""
    param = theta0.detach().clone().requires_grad_(True)
    opt, scheduler = torch_optimizer(rule, param)
    path = [param.detach().clone()]
    for _ in range(steps):
        with torch.no_grad():
            param.grad = gradient(param.detach())
        opt.step()
        if scheduler is not None:
            scheduler.step()
        path.append(param.detach().clone())
    return torch.stack(path)


def torch_step(rule: Rule, state: OptimizerState, gradient: Gradient) -> torch.Tensor:
    """torch.optim's parameter (2,) after one step from the engine's ``state``.

    The state is written into the optimizer's own state (momentum buffer, Adagrad's sum,
    RMSprop's and Adam's averages and step count) and the learning rate of step t set from the
    rule's schedule, so each step is compared on its own: rounding does not compound, which
    matters where δ = 0 makes the rule divide round-off by round-off. For Nesterov the
    parameter is the look-ahead point before and after the step.
    """
    velocity = state.theta - state.theta_prev  # θ_t − θ_{t−1}
    param = (state.theta + rule.lookahead * velocity).requires_grad_(True)
    opt, scheduler = torch_optimizer(rule, param)
    t = state.t
    if scheduler is not None:
        opt.param_groups[0]["lr"] = scheduler.base_lrs[0] * scheduler.lr_lambdas[0](t)
    memory = opt.state[param]
    step = torch.tensor(float(t))
    if isinstance(opt, torch.optim.SGD) and (rule.lookahead or rule.heavy_ball) and t > 0:
        memory["momentum_buffer"] = -velocity / rule.eta  # θ_t − θ_{t−1} = −η b_{t−1}
    elif isinstance(opt, torch.optim.Adagrad):
        memory.update(step=step, sum=state.v + rule.delta_in)  # torch's sum starts at δ
    elif isinstance(opt, torch.optim.RMSprop):
        memory.update(step=step, square_avg=state.v.clone())
    elif isinstance(opt, torch.optim.Adam):
        memory.update(step=step, exp_avg=state.m.clone(), exp_avg_sq=state.v.clone())
    with torch.no_grad():
        param.grad = gradient(param.detach())
    opt.step()
    return param.detach()
