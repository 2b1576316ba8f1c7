r"""1.3 Gradient-based learning: optimizers racing on 2-D loss surfaces, against the theory.

The cheat sheet, corrected per ERRATA.md (A-1.3.2-3, A-1.3.2-4, G-1.3.2-5, A-1.3.3-6, G-1.3.4-7):

* gradient descent :math:`\theta_{t+1} = \theta_t - \eta\nabla h(\theta_t)`; for an
  :math:`L`-smooth h (:math:`\|\nabla^2 h\|_2 \le L`) and :math:`\eta = 1/L`,
  :math:`\min_{\tau<t}\|\nabla h(\theta_\tau)\| \le \varepsilon` once
  :math:`t \ge 2L(h(\theta_0) - \min h)/\varepsilon^2` (the sheet prints
  :math:`\Delta t = 2L(\dots)/\varepsilon`); under PL with constant μ,
  :math:`h(\theta_t) - \min h \le (1 - \mu/L)^t (h(\theta_0) - \min h)`;
* heavy ball, Nesterov, AdaGrad, RMSprop ("Adam without momentum"), Adam — Kingma & Ba's
  bias-corrected form, and the sheet's printed form (no bias correction, δ inside the root) as
  a separate racer — and SGD with a decaying step (see :mod:`optimizer_rules`);
* SGD variance :math:`V[\theta](S) = \frac1s\sum_i\|\nabla h[\theta](S) - \nabla h[\theta](x_i,
  y_i)\|^2`, and :math:`\mathbb E[h(\theta_t)] - \min h = O(1/t)` for a strongly convex,
  smooth h with steps :math:`\eta_t \propto 1/t`.

References: Nesterov, *Introductory Lectures on Convex Optimization* (2004) §1.2.3, §2.2;
Karimi, Nutini & Schmidt (2016); Polyak (1964); Kingma & Ba (2015); Bottou, Curtis & Nocedal,
*Optimization Methods for Large-Scale Machine Learning* (2018) Thm 4.7; Goh, *Why Momentum
Really Works*, Distill (2017).

Three modes, all computed as batched tensor operations (:class:`BatchedOptimizers`):

* ``race``: the chosen optimizers from one start, streamed chunk by chunk: paths on the
  contour map, :math:`h - \min h` and the distance to the nearest minimum against the step;
* ``cloud``: many starts in a disc around the start, every optimizer from each of them;
* ``grid``: a sweep of η (log) × β (α for RMSprop) per optimizer, the final gap as a
  heat map (the phase diagrams of *Why Momentum Really Works*), then the best setting of each
  optimizer raced from the start.

Every run ends with the theory, on the chosen surface and start: the update rules against
``torch.optim`` step for step, and GD with η = 1/L against the ε-critical bound; on the
quadratic also the linear rate, Nesterov's bound and the √κ speed-ups of heavy ball and
Nesterov; on the least-squares surface the SGD variance formula and the O(1/t) rate.
All in float64 on ``ctx.device``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from pydantic import Field, ValidationInfo, field_validator

from engine.core import (
    ClickInput,
    Experiment,
    Formula,
    Frame,
    Params,
    RunContext,
    Section,
    extend,
    finish,
    restyle,
)
from engine.experiments.loss_surfaces import (
    DTYPE,
    Surface,
    grid,
    make_surface,
)
from engine.experiments.optimizer_rules import (
    BatchedOptimizers,
    Coefficients,
    Rule,
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
    SGD_CHAINS,
    SPEEDUP_MIN_KAPPA,
    TORCH_STEPS,
    check_eps_critical,
    check_linear_rate,
    check_nesterov_bound,
    check_sgd_rate,
    check_sgd_variance,
    check_speedups,
    check_torch_agreement,
    decimate,
)

# Bounds that keep a run within seconds on a CPU: trajectory-steps (x batch on the noisy
# surface) of one sweep; about 4,096 starts x 8 optimizers x 2,000 steps.
WORK_BUDGET = 70_000_000
MAX_KAPPA_NOISY = 100.0  # the O(1/t) check needs t >> κ steps
FRAME_CHUNKS = 60  # race: chunks of steps, 3 frames each
SWEEP_FRAMES = 10  # grid: heat-map updates while sweeping
CLOUD_DRAWN = 16  # trajectories drawn per optimizer in a cloud
CLOUD_POINTS = 100  # points drawn per trajectory in a cloud
CONTOUR_GRID = 121
CONTOUR_OFFSET = 1e-3  # contours of log10(h − min h + 1e-3)
DIVERGED = 1e6  # a trajectory whose gap exceeds 1e6 (gap₀ + 1) has diverged

Optimizer = Literal["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adam_sheet", "sgd"]


def _eta(default: float, who: str) -> float:
    return Field(default, ge=1e-6, le=10.0, description=f"Step size η of {who} (> 0).")


def _delta(who: str) -> float:
    return Field(1e-8, ge=1e-12, le=1.0, description=f"δ of {who}, against division by zero.")


class OptimizersParams(Params):
    """Surface, start, racers and their hyper-parameters, sweep; bounds keep a CPU run short."""

    mode: Literal["race", "cloud", "grid"] = Field(
        "race",
        description="'race': the optimizers from one start. 'cloud': from many starts in a disc "
        "around it. 'grid': a sweep of η × β per optimizer (final loss as a heat map), then the "
        "best setting of each raced.",
    )
    surface: Literal[
        "quadratic", "noisy_quadratic", "rosenbrock", "beale", "himmelblau", "saddle"
    ] = Field(
        "quadratic",
        description="The loss h: an ill-conditioned quadratic (μ, L, rotation); least squares "
        "with the same Hessian seen through minibatch gradients (noise, batch); Rosenbrock; "
        "Beale; Himmelblau (four minima); a saddle ½x² + ¼(y² − 1)².",
    )
    quad_mu: float = Field(
        1.0, ge=0.01, le=100.0, description="μ, the smallest eigenvalue of the quadratic's A."
    )
    quad_L: float = Field(
        20.0, ge=0.01, le=100.0, validate_default=True,
        description="L, the largest eigenvalue of A (L ≥ μ; κ = L/μ).",
    )
    quad_angle: float = Field(
        30.0, ge=-90.0, le=90.0, description="Rotation φ of A's eigenvectors, in degrees."
    )
    samples: int = Field(
        200, ge=10, le=2000, description="Noisy surface: number s of least-squares points."
    )
    noise: float = Field(
        1.0, ge=0.0, le=10.0, description="Noisy surface: label noise σ, y = xᵀθ* + σε."
    )
    batch: int = Field(
        4, ge=1, le=64, validate_default=True,
        description="Noisy surface: minibatch size b (drawn with replacement).",
    )
    x0: float = Field(-3.5, ge=-10.0, le=10.0, allow_inf_nan=False,
                      description="Start θ₀, first coordinate (or click the contour map).")
    y0: float = Field(2.5, ge=-10.0, le=10.0, allow_inf_nan=False,
                      description="Start θ₀, second coordinate.")
    steps: int = Field(2000, ge=10, le=5000, description="Steps T of every optimizer.")
    tol: float = Field(
        1e-8, ge=1e-14, le=1.0, description="Tolerance on h − min h for 'steps to tolerance'."
    )
    gd: bool = Field(True, description="Race gradient descent θ ← θ − η∇h(θ).")
    gd_eta: float = _eta(0.05, "gradient descent")
    momentum: bool = Field(True, description="Race heavy-ball momentum.")
    momentum_eta: float = _eta(0.05, "heavy ball")
    momentum_beta: float = Field(0.8, ge=0.0, le=0.999, description="Momentum β of heavy ball.")
    nesterov: bool = Field(True, description="Race Nesterov's accelerated gradient.")
    nesterov_eta: float = _eta(0.05, "Nesterov")
    nesterov_beta: float = Field(0.8, ge=0.0, le=0.999, description="Momentum β of Nesterov.")
    adagrad: bool = Field(True, description="Race AdaGrad.")
    adagrad_eta: float = _eta(1.0, "AdaGrad")
    adagrad_delta: float = _delta("AdaGrad (inside the root, as printed)")
    rmsprop: bool = Field(True, description="Race RMSprop (the sheet's Adam without momentum).")
    rmsprop_eta: float = _eta(0.05, "RMSprop")
    rmsprop_alpha: float = Field(
        0.9, ge=0.0, le=0.9999, description="Decay α of RMSprop's squared-gradient average."
    )
    rmsprop_delta: float = _delta("RMSprop (inside the root, as printed)")
    adam: bool = Field(True, description="Race Adam as Kingma & Ba and torch.optim.Adam: "
                       "bias-corrected, δ outside the root.")
    adam_eta: float = _eta(0.1, "both Adams")
    adam_beta: float = Field(
        0.9, ge=0.0, le=0.999, description="Decay β of Adam's gradient average (both Adams)."
    )
    adam_alpha: float = Field(
        0.999, ge=0.0, le=0.99999,
        description="Decay α of Adam's squared-gradient average (both Adams).",
    )
    adam_delta: float = _delta("both Adams")
    adam_sheet: bool = Field(
        False,
        description="Also race Adam as printed on the sheet: no bias correction, δ inside the "
        "root (same η, β, α, δ). Its first step is (1 − β)/√(1 − α) times Kingma & Ba's.",
    )
    sgd: bool = Field(False, validate_default=True,
                      description="Race SGD with a decaying step η/(1 + t/t₀).")
    sgd_eta: float = _eta(0.05, "SGD (at t = 0)")
    sgd_t0: float = Field(
        100.0, ge=1.0, le=100_000.0, description="t₀ of SGD's step η_t = η/(1 + t/t₀)."
    )
    starts: int = Field(256, ge=2, le=4096, validate_default=True,
                        description="Cloud: number of start points.")
    cloud_radius: float = Field(
        1.0, ge=0.01, le=10.0, description="Cloud: radius of the disc of starts around θ₀."
    )
    grid_size: int = Field(24, ge=2, le=64, validate_default=True,
                           description="Grid: values of η and of β swept.")
    grid_eta_min: float = Field(
        1e-4, ge=1e-6, le=10.0, description="Grid: smallest η (log-spaced)."
    )
    grid_eta_max: float = Field(1.0, ge=1e-6, le=10.0, validate_default=True,
                                description="Grid: largest η.")
    grid_beta_max: float = Field(
        0.99, ge=0.0, le=0.999,
        description="Grid: β (α for RMSprop) runs from 0 to this value.",
    )

    # Cross-field rules as field validators (fields are validated in declaration order, and
    # validate_default=True runs them on defaults too), so that a 422 names the field to change.
    @field_validator("quad_L")
    @classmethod
    def _L_at_least_mu(cls, L: float, info: ValidationInfo) -> float:
        mu = info.data.get("quad_mu")
        if mu is not None and mu > L:
            raise ValueError(f"quad_L must be at least quad_mu (L is the largest eigenvalue), "
                             f"got L={L}, mu={mu}")
        noisy = info.data.get("surface") == "noisy_quadratic"
        if mu is not None and noisy and L / mu > MAX_KAPPA_NOISY:
            raise ValueError(f"the noisy surface allows κ = L/mu up to {MAX_KAPPA_NOISY:g} "
                             f"(its O(1/t) check needs t >> κ), got {L / mu:g}")
        return L

    @field_validator("batch")
    @classmethod
    def _batch_fits(cls, batch: int, info: ValidationInfo) -> int:
        samples = info.data.get("samples")
        if samples is not None and batch > samples:
            raise ValueError(f"batch must not exceed samples, got batch={batch}, "
                             f"samples={samples}")
        return batch

    @field_validator("sgd")
    @classmethod
    def _some_optimizer(cls, sgd: bool, info: ValidationInfo) -> bool:
        chosen = [key for key in OPTIMIZERS if key != "sgd" and info.data.get(key)]
        if not sgd and not chosen:
            raise ValueError("choose at least one optimizer to race (gd, momentum, nesterov, "
                             "adagrad, rmsprop, adam, adam_sheet, sgd)")
        return sgd

    @field_validator("starts")
    @classmethod
    def _cloud_budget(cls, starts: int, info: ValidationInfo) -> int:
        if info.data.get("mode") == "cloud":
            _check_budget("starts", starts, info.data)
        return starts

    @field_validator("grid_size")
    @classmethod
    def _grid_budget(cls, grid_size: int, info: ValidationInfo) -> int:
        if info.data.get("mode") == "grid":
            _check_budget("grid_size", grid_size**2, info.data)
        return grid_size

    @field_validator("grid_eta_max")
    @classmethod
    def _eta_range(cls, eta_max: float, info: ValidationInfo) -> float:
        eta_min = info.data.get("grid_eta_min")
        if eta_min is not None and eta_max <= eta_min:
            raise ValueError(f"grid_eta_max must exceed grid_eta_min, got {eta_max} <= {eta_min}")
        return eta_max


def _check_budget(field: str, trajectories: int, data: dict) -> None:
    if "steps" not in data:
        return
    racers = sum(1 for key in OPTIMIZERS if data.get(key))
    batch = data.get("batch", 1) if data.get("surface") == "noisy_quadratic" else 1
    work = trajectories * racers * data["steps"] * batch
    if work > WORK_BUDGET:
        raise ValueError(
            f"{field}: {trajectories} trajectories x {racers} optimizers x {data['steps']} steps"
            + (f" x batch {batch}" if batch > 1 else "")
            + f" = {work:.3g} exceeds the budget {WORK_BUDGET:.3g}; lower {field} or steps"
        )


# ----------------------------------------------------------------------------------------------
# The racers.


@dataclass(frozen=True)
class Racer:
    """How one optimizer is drawn and built from the params; ``second`` is its grid y-axis."""

    key: str
    label: str
    color: str
    second: str | None


OPTIMIZERS: dict[str, Racer] = {
    r.key: r
    for r in (
        Racer("gd", "GD", "#1f77b4", None),
        Racer("momentum", "heavy ball", "#ff7f0e", "β"),
        Racer("nesterov", "Nesterov", "#2ca02c", "β"),
        Racer("adagrad", "AdaGrad", "#d62728", None),
        Racer("rmsprop", "RMSprop", "#9467bd", "α"),
        Racer("adam", "Adam", "#8c564b", "β"),
        Racer("adam_sheet", "Adam as printed", "#e377c2", "β"),
        Racer("sgd", "SGD, η/(1 + t/t₀)", "#17becf", None),
    )
}


def chosen(params: OptimizersParams) -> list[Racer]:
    """The racers switched on, in a fixed order."""
    return [racer for key, racer in OPTIMIZERS.items() if getattr(params, key)]


def rule_of(key: str, p: OptimizersParams, eta: float | None = None,
            second: float | None = None) -> Rule:
    """The update rule of racer ``key`` with the params' hyper-parameters; ``eta`` and
    ``second`` (β, or α for RMSprop) override them in a grid sweep."""

    def pick(value, default):
        return default if value is None else value

    if key == "gd":
        return gradient_descent(pick(eta, p.gd_eta))
    if key == "momentum":
        return heavy_ball(pick(eta, p.momentum_eta), pick(second, p.momentum_beta))
    if key == "nesterov":
        return nesterov(pick(eta, p.nesterov_eta), pick(second, p.nesterov_beta))
    if key == "adagrad":
        return adagrad(pick(eta, p.adagrad_eta), p.adagrad_delta)
    if key == "rmsprop":
        return rmsprop(pick(eta, p.rmsprop_eta), pick(second, p.rmsprop_alpha), p.rmsprop_delta)
    if key == "adam":
        return adam(pick(eta, p.adam_eta), pick(second, p.adam_beta), p.adam_alpha, p.adam_delta)
    if key == "adam_sheet":
        return adam_as_printed(
            pick(eta, p.adam_eta), pick(second, p.adam_beta), p.adam_alpha, p.adam_delta
        )
    if key == "sgd":
        return sgd_decaying(pick(eta, p.sgd_eta), p.sgd_t0)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {key!r}")


def surface_of(params: OptimizersParams, device: torch.device | str = "cpu") -> Surface:
    return make_surface(
        params.surface, mu=params.quad_mu, L=params.quad_L, angle_deg=params.quad_angle,
        samples=params.samples, noise=params.noise, seed=params.seed, device=device,
    )


def view_box(surface: Surface, x0: float, y0: float) -> tuple[float, float, float, float]:
    """The surface's box, grown to hold the start with a margin."""
    x_min, x_max, y_min, y_max = surface.box
    margin = 0.05 * max(x_max - x_min, y_max - y_min)
    return (min(x_min, x0 - margin), max(x_max, x0 + margin),
            min(y_min, y0 - margin), max(y_max, y0 + margin))


def gradient_of(surface: Surface, params: OptimizersParams, generator: torch.Generator):
    """∇h, or on the noisy surface a minibatch gradient with its own batch per trajectory."""
    if surface.data is None:
        return surface.grad
    data, batch = surface.data, params.batch
    return lambda theta: data.minibatch_grad(theta, batch, generator)


# ----------------------------------------------------------------------------------------------
# Formulas and figures.

FORMULAS = (
    Formula("Gradient descent", r"\theta_{t+1} = \theta_t - \eta\nabla h(\theta_t)"),
    Formula(
        "L-smoothness",
        r"\|\nabla h(\theta_1) - \nabla h(\theta_2)\| \le L\|\theta_1 - \theta_2\|"
        r" \iff \|\nabla^2 h\|_2 \le L",
        erratum="A-1.3.2-3",
    ),
    Formula(
        "ε-critical point (η = 1/L)",
        r"\min_{\tau < t}\|\nabla h(\theta_\tau)\| \le \varepsilon \ \text{once}\ "
        r"t \ge \frac{2L\,(h(\theta_0) - \min h)}{\varepsilon^2}",
        erratum="A-1.3.2-4",
    ),
    Formula(
        "Linear rate under PL (η = 1/L)",
        r"h(\theta_t) - \min h \le \left(1 - \frac{\mu}{L}\right)^t (h(\theta_0) - \min h)",
        erratum="G-1.3.2-5",
    ),
    Formula(
        "Heavy ball",
        r"\theta_{t+1} = \theta_t - \eta\nabla h(\theta_t) + \beta(\theta_t - \theta_{t-1})",
    ),
    Formula(
        "Nesterov",
        r"\hat\theta_{t+1} = \theta_t + \beta(\theta_t - \theta_{t-1}),\ "
        r"\theta_{t+1} = \hat\theta_{t+1} - \eta\nabla h(\hat\theta_{t+1})",
    ),
    Formula(
        "AdaGrad",
        r"\gamma_i^t = \gamma_i^{t-1} + \left(\frac{\partial h}{\partial\theta_i}(\theta_t)"
        r"\right)^2,\ \theta_{i,t+1} = \theta_{i,t} - \frac{\eta}{\sqrt{\gamma_i^t + \delta}}"
        r"\frac{\partial h}{\partial\theta_i}(\theta_t)",
    ),
    Formula(
        "Adam (Kingma & Ba)",
        r"\hat g^t = \frac{g^t}{1 - \beta^t},\ \hat\gamma^t = \frac{\gamma^t}{1 - \alpha^t},\ "
        r"\theta_{t+1} = \theta_t - \eta\frac{\hat g^t}{\sqrt{\hat\gamma^t} + \delta}",
        erratum="A-1.3.3-6",
    ),
    Formula(
        "Adam as printed on the sheet (racer 'Adam as printed'; no bias correction)",
        r"g^t = \beta g^{t-1} + (1 - \beta)\nabla h(\theta_t),\ \gamma^t = \alpha\gamma^{t-1}"
        r" + (1 - \alpha)(\nabla h(\theta_t))^2,\ \theta_{t+1} = \theta_t - "
        r"\frac{\eta}{\sqrt{\gamma^t + \delta}} g^t",
        erratum="A-1.3.3-6",
    ),
    Formula(
        "RMSprop",
        r"\gamma^t = \alpha\gamma^{t-1} + (1 - \alpha) g_t^2,\ "
        r"\theta_{t+1} = \theta_t - \frac{\eta}{\sqrt{\gamma^t + \delta}} g_t",
    ),
    Formula(
        "SGD",
        r"\theta_{t+1} = \theta_t - \eta_t\nabla h(\theta_t)(x_{i_t}, y_{i_t})",
    ),
    Formula(
        "SGD variance",
        r"V[\theta](S) = \frac1s\sum_{i=1}^s\|\nabla h[\theta](S) - \nabla h[\theta](x_i, y_i)"
        r"\|^2,\ \mathbb{E}\|g_B - \nabla h\|^2 = \frac{V}{b}",
    ),
    Formula(
        "SGD rate (strongly convex, smooth)",
        r"\mathbb{E}[h(\theta_t)] - \min h = O\!\left(\frac1t\right),\ "
        r"\eta_t = \frac{1}{\mu(t + t_0)}",
        erratum="G-1.3.4-7",
    ),
)

# Trace indices of the contour map; the racers' traces follow.
SURFACE_CONTOUR, SURFACE_MINIMA, SURFACE_START, SURFACE_RACERS = range(4)


def theory_traces(surface: Surface) -> list[tuple[str, str, str, int]]:
    """(name, color, dash, subplot column) of the theory figure's traces, in index order."""
    left: list[tuple[str, str, str, int]]
    if surface.name == "quadratic":
        left = [
            ("GD η = 1/L", "#1f77b4", "solid", 1),
            ("(1 − μ/L)ᵗ (h₀ − min h)", "#1f77b4", "dash", 1),
            ("Nesterov, optimal β", "#2ca02c", "solid", 1),
            ("(1 − 1/√κ)ᵗ (h₀ − min h + μ/2‖θ₀ − θ*‖²)", "#2ca02c", "dash", 1),
            ("heavy ball, optimal η, β", "#ff7f0e", "solid", 1),
        ]
    elif surface.name == "noisy_quadratic":
        left = [
            (f"SGD η_t = 1/(μ(t + t₀)): mean of {SGD_CHAINS} chains", "#17becf", "solid", 1),
            ("fit c·tˢˡᵒᵖᵉ", "#17becf", "dash", 1),
        ]
    else:
        left = [("GD η = 1/L", "#1f77b4", "solid", 1)]
    right = [
        ("min_{τ<t} ‖∇h(θ_τ)‖, GD η = 1/L", "#1f77b4", "solid", 2),
        ("√(2L(h₀ − min h)/t)", "#555555", "dash", 2),
    ]
    return left + right


def _line(name: str, color: str, dash: str = "solid", mode: str = "lines", **kw) -> go.Scatter:
    return go.Scatter(x=[], y=[], name=name, mode=mode, line=dict(color=color, dash=dash), **kw)


def contour_z(surface: Surface, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, points = grid(box, CONTOUR_GRID)
    z = torch.log10(surface.gap(points) + CONTOUR_OFFSET)
    return xs.numpy(), ys.numpy(), z.numpy()


def figures(params: OptimizersParams) -> dict[str, go.Figure]:
    """The contour map with the start, the loss and distance charts, the theory, the sweep.

    Log axes start a few decades below the tolerance: the fast optimizers go on to 1e-300,
    which would squash everything else (zoom out to see it).
    """
    surface = surface_of(params)
    box = view_box(surface, params.x0, params.y0)
    xs, ys, z = contour_z(surface, box)
    racers = chosen(params)
    minima = surface.minima.numpy()
    theta0 = torch.tensor([params.x0, params.y0], dtype=DTYPE)
    top_gap = math.log10(max(float(surface.gap(theta0)), params.tol)) + 1
    top_distance = math.log10(max(float(surface.distance(theta0)), math.sqrt(params.tol))) + 1
    low_gap = math.log10(params.tol) - 4
    surface_fig = go.Figure(
        [
            go.Contour(
                x=xs, y=ys, z=z, name="log₁₀(h − min h + 10⁻³)", showscale=False, ncontours=30,
                colorscale="Blues", reversescale=True, opacity=0.5, hoverinfo="skip",
                contours=dict(coloring="heatmap", showlines=True), line=dict(width=0.5),
            ),
            go.Scatter(x=minima[:, 0], y=minima[:, 1], name="minima", mode="markers",
                       marker=dict(symbol="x", size=10, color="#000000")),
            go.Scatter(x=[params.x0], y=[params.y0], name="start θ₀", mode="markers",
                       marker=dict(symbol="star", size=14, color="#000000")),
        ],
        layout=dict(
            title=f"{surface.title}: paths from the start (click the map to move it)",
            xaxis=dict(title="θ₁", range=[box[0], box[1]]),
            yaxis=dict(title="θ₂", range=[box[2], box[3]], scaleanchor="x", scaleratio=1),
            legend=dict(orientation="h"),
            height=640,
        ),
    )
    if params.mode == "cloud":
        drawn = min(params.starts, CLOUD_DRAWN)
        for racer in racers:
            for j in range(drawn):
                surface_fig.add_trace(_line(
                    racer.label, racer.color, legendgroup=racer.key, showlegend=j == 0,
                    opacity=0.6,
                ))
    else:
        for racer in racers:
            surface_fig.add_trace(_line(racer.label, racer.color, mode="lines+markers",
                                        marker=dict(size=3)))
    cloud = params.mode == "cloud"
    log_axis = dict(type="log", exponentformat="power")
    loss = go.Figure(
        [_line(r.label, r.color) for r in racers],
        layout=dict(
            title="h(θ_t) − min h" + (" (median over the starts)" if cloud else ""),
            xaxis=dict(title="step t"),
            yaxis=dict(title="h − min h", range=[low_gap, top_gap], **log_axis),
        ),
    )
    distance = go.Figure(
        [_line(r.label, r.color) for r in racers],
        layout=dict(
            title=(f"Fraction of starts with h − min h ≤ {params.tol:g}" if cloud
                   else "Distance ‖θ_t − θ*‖ to the nearest minimum"),
            xaxis=dict(title="step t"),
            yaxis=dict(title="fraction", range=[0, 1.02]) if cloud
            else dict(title="‖θ_t − θ*‖", range=[low_gap / 2, top_distance], **log_axis),
        ),
    )
    theory = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "the theory's runs against their bounds", "ε-critical point, GD with η = 1/L",
    ))
    for name, color, dash, col in theory_traces(surface):
        theory.add_trace(_line(name, color, dash), row=1, col=col)
    theory.update_layout(
        title="Theory on this surface and start, checked at the end",
        legend=dict(orientation="h", yanchor="top", y=-0.25), height=560,
    )
    theory.update_xaxes(title_text="step t", type="log")
    theory.update_yaxes(**log_axis)
    theory.update_yaxes(title_text="h − min h", range=[-20, top_gap + 0.5], row=1, col=1)
    theory.update_yaxes(title_text="‖∇h‖", row=1, col=2)
    figs = {"surface": surface_fig, "loss": loss, "distance": distance, "theory": theory}
    if params.mode == "grid":
        figs["sweep"] = sweep_figure(params, racers)
    return figs


def grid_axes(params: OptimizersParams) -> tuple[np.ndarray, np.ndarray]:
    """The swept η (log-spaced) and β (linear from 0), each ``grid_size`` values."""
    etas = np.geomspace(params.grid_eta_min, params.grid_eta_max, params.grid_size)
    seconds = np.linspace(0.0, params.grid_beta_max, params.grid_size)
    return etas, seconds


def sweep_figure(params: OptimizersParams, racers: list[Racer]) -> go.Figure:
    etas, seconds = grid_axes(params)
    cols = min(len(racers), 3)
    rows = math.ceil(len(racers) / cols)
    titles = [f"{r.label}: η × {r.second}" if r.second else f"{r.label}: η (rows alike)"
              for r in racers]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.08, vertical_spacing=0.15)
    empty = np.full((params.grid_size, params.grid_size), np.nan)
    for k, _ in enumerate(racers):
        fig.add_trace(
            go.Heatmap(x=np.log10(etas), y=seconds, z=empty, coloraxis="coloraxis"),
            row=k // cols + 1, col=k % cols + 1,
        )
    fig.update_layout(
        title=f"log₁₀(h − min h) after {params.steps} steps over (η, β); top colour = diverged",
        coloraxis=dict(colorscale="Viridis", colorbar=dict(title="log₁₀ gap")),
        height=320 * rows,
    )
    fig.update_xaxes(title_text="log₁₀ η")
    for k, racer in enumerate(racers):
        fig.update_yaxes(title_text=racer.second or "(unused)", row=k // cols + 1,
                         col=k % cols + 1)
    return fig


# ----------------------------------------------------------------------------------------------
# Streaming the race, the cloud and the grid.


def _chunks(steps: int, count: int) -> list[int]:
    """``steps`` split into at most ``count`` chunks of (nearly) equal size."""
    size = math.ceil(steps / count)
    return [min(size, steps - start) for start in range(0, steps, size)]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


@dataclass
class RaceTally:
    """Per racer: first step with h − min h ≤ tol, step it diverged at, last gap."""

    hit: list[int | None]
    diverged: list[int | None]
    last_gap: list[float]

    def metrics(self, racers: list[Racer], prefix: str = "") -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {}
        for k, racer in enumerate(racers):
            hit = self.hit[k]
            out[f"{prefix}{racer.label}: steps to tol"] = "not reached" if hit is None else hit
            dead = self.diverged[k]
            out[f"{prefix}{racer.label}: final h − min h"] = (
                f"diverged at t = {dead}" if dead is not None else self.last_gap[k]
            )
        return out


def stream_race(
    params: OptimizersParams, surface: Surface, racers: list[Racer], rules: list[Rule],
    theta0: torch.Tensor, ctx: RunContext, progress_offset: int = 0, progress_total: int = 0,
) -> Iterator[Frame]:
    """Race ``rules`` from ``theta0`` and stream the paths chunk by chunk; returns the tally
    (or None when stopped)."""
    K = len(rules)
    optimizers = BatchedOptimizers(
        Coefficients.stack(rules, device=theta0.device), theta0[None], gradient_of(
            surface, params, ctx.generator),
    )
    gap0 = float(surface.gap(theta0))
    limit = DIVERGED * (gap0 + 1.0)
    tally = RaceTally([None] * K, [None] * K, [gap0] * K)
    total = progress_total or params.steps
    t = 0
    indices = list(range(SURFACE_RACERS, SURFACE_RACERS + K))
    for n in _chunks(params.steps, FRAME_CHUNKS):
        if ctx.should_stop():
            return None
        path = [optimizers.theta[:, 0].clone()] if t == 0 else []
        path += [optimizers.step()[:, 0].clone() for _ in range(n)]
        points = torch.stack(path, dim=1)  # (K, n', 2)
        gaps, dists = surface.gap(points), surface.distance(points)  # (K, n')
        steps = np.arange(t + 1 - (len(path) - n), t + n + 1, dtype=np.float64)
        t += n
        P, G, D = _np(points).copy(), _np(gaps).copy(), _np(dists).copy()
        for k in range(K):
            bad = ~np.isfinite(G[k]) | (G[k] > limit)
            if tally.diverged[k] is None and bad.any():
                tally.diverged[k] = int(steps[np.argmax(bad)])
            if tally.diverged[k] is not None:
                dead = steps >= tally.diverged[k]
                P[k, dead], G[k, dead], D[k, dead] = np.nan, np.nan, np.nan
                continue
            tally.last_gap[k] = float(G[k, -1])
            below = G[k] <= params.tol
            if tally.hit[k] is None and below.any():
                tally.hit[k] = int(steps[np.argmax(below)])
        frame = extend("surface", indices, x=list(P[:, :, 0]), y=list(P[:, :, 1]))
        frame.progress = (progress_offset + t, total)
        yield frame
        yield extend("loss", list(range(K)), x=[steps] * K, y=list(G))
        frame = extend("distance", list(range(K)), x=[steps] * K, y=list(D))
        frame.metrics = tally.metrics(racers)
        yield frame
    return tally


def disc_starts(center: torch.Tensor, radius: float, n: int,
                generator: torch.Generator) -> torch.Tensor:
    """n points uniform in the disc of ``radius`` around ``center``, (n, 2); the first is the
    center itself, so the cloud contains the race."""
    angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=DTYPE, device=center.device)
    r = radius * torch.rand(n, generator=generator, dtype=DTYPE, device=center.device).sqrt()
    points = center + torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=-1)
    points[0] = center
    return points


def stream_cloud(
    params: OptimizersParams, surface: Surface, racers: list[Racer], rules: list[Rule],
    theta0: torch.Tensor, ctx: RunContext,
) -> Iterator[Frame]:
    """Every racer from ``starts`` points; draws a few paths (decimated), the median gap and
    the fraction within tolerance. Returns the metrics (or None when stopped)."""
    K, B = len(rules), params.starts
    starts = disc_starts(theta0, params.cloud_radius, B, ctx.generator)
    S = _np(starts)
    yield restyle("surface", [SURFACE_START], x=[S[:, 0]], y=[S[:, 1]],
                  **{"marker.size": [5]})
    optimizers = BatchedOptimizers(
        Coefficients.stack(rules, device=theta0.device), starts,
        gradient_of(surface, params, ctx.generator),
    )
    drawn = min(B, CLOUD_DRAWN)
    stride = max(1, math.ceil(params.steps / CLOUD_POINTS))
    hit = torch.full((K, B), -1, dtype=torch.long, device=theta0.device)
    indices = [SURFACE_RACERS + k * drawn + j for k in range(K) for j in range(drawn)]
    t = 0
    fraction = median = None
    for n in _chunks(params.steps, FRAME_CHUNKS):
        if ctx.should_stop():
            return None
        recorded, ts = ([optimizers.theta.clone()], [0]) if t == 0 else ([], [])
        for _ in range(n):
            theta = optimizers.step()
            t += 1
            if t % stride == 0 or t == params.steps:
                recorded.append(theta.clone())
                ts.append(t)
        if not recorded:
            continue
        thetas = torch.stack(recorded, dim=2)  # (K, B, r, 2)
        gaps = torch.nan_to_num(surface.gap(thetas), nan=math.inf)  # (K, B, r)
        t_rec = torch.tensor(ts, device=gaps.device)
        below = gaps <= params.tol
        first = torch.where(below.any(dim=2), t_rec[below.int().argmax(dim=2)], -1)
        hit = torch.where(hit < 0, first, hit)
        median = gaps.median(dim=1).values  # (K, r); for an even count the lower middle value
        fraction = below.to(DTYPE).mean(dim=1)  # (K, r)
        paths = _np(thetas[:, :drawn])  # (K, drawn, r, 2)
        x = [paths[k, j, :, 0] for k in range(K) for j in range(drawn)]
        y = [paths[k, j, :, 1] for k in range(K) for j in range(drawn)]
        frame = extend("surface", indices, x=x, y=y)
        frame.progress = (t, params.steps)
        yield frame
        steps = np.asarray(ts, dtype=np.float64)
        yield extend("loss", list(range(K)), x=[steps] * K, y=list(_np(median)))
        frame = extend("distance", list(range(K)), x=[steps] * K, y=list(_np(fraction)))
        frame.metrics = _cloud_metrics(racers, fraction[:, -1], hit)
        yield frame
    metrics = _cloud_metrics(racers, fraction[:, -1], hit)
    for k, racer in enumerate(racers):
        metrics[f"{racer.label}: median final h − min h"] = float(median[k, -1])
    return metrics


def _cloud_metrics(racers, fraction, hit) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    for k, racer in enumerate(racers):
        out[f"{racer.label}: fraction within tol"] = float(fraction[k])
        reached = hit[k][hit[k] >= 0]
        out[f"{racer.label}: median steps to tol"] = (
            int(reached.median()) if reached.numel() else "not reached"
        )
    return out


def sweep_z(gaps: torch.Tensor, gap0: float, size: int) -> np.ndarray:
    """log₁₀ of the gaps (K, size²) as (K, size, size) heat maps; diverged ones at the top."""
    top = math.log10(gap0 + 1e-300) + 3.0
    z = torch.log10(gaps.clamp(min=1e-300)).clamp(max=top)
    z = torch.nan_to_num(z, nan=top, posinf=top)
    return _np(z.reshape(-1, size, size)).astype(np.float32)


def stream_grid(
    params: OptimizersParams, surface: Surface, racers: list[Racer], theta0: torch.Tensor,
    ctx: RunContext,
) -> Iterator[Frame]:
    """Sweep η × β for every racer from ``theta0``, then race the best setting of each.
    Returns the metrics (or None when stopped)."""
    etas, seconds = grid_axes(params)
    G = params.grid_size
    rules = [
        [rule_of(r.key, params, eta=float(eta), second=float(s) if r.second else None)
         for s in seconds for eta in etas]
        for r in racers
    ]  # K lists of G² settings, row = β
    optimizers = BatchedOptimizers(
        Coefficients.stack(rules, device=theta0.device), theta0[None],
        gradient_of(surface, params, ctx.generator),
    )
    gap0 = float(surface.gap(theta0))
    total = 2 * params.steps
    t = 0
    K = len(racers)
    for n in _chunks(params.steps, SWEEP_FRAMES):
        for _ in range(n):
            if t % 50 == 0 and ctx.should_stop():
                return None
            optimizers.step()
            t += 1
        gaps = torch.nan_to_num(surface.gap(optimizers.theta), nan=math.inf)  # (K, G²)
        z = sweep_z(gaps, gap0, G)
        frame = restyle("sweep", list(range(K)), z=list(z))
        frame.progress = (t, total)
        yield frame
    best = gaps.argmin(dim=1)  # (K,)
    best_rules = [rules[k][int(best[k])] for k in range(K)]
    metrics: dict[str, float | int | str] = {}
    for k, racer in enumerate(racers):
        i = int(best[k])
        metrics[f"{racer.label}: best η"] = float(etas[i % G])
        if racer.second:
            metrics[f"{racer.label}: best {racer.second}"] = float(seconds[i // G])
        metrics[f"{racer.label}: converged settings"] = int((gaps[k] <= params.tol).sum())
    tally = yield from stream_race(params, surface, racers, best_rules, theta0, ctx,
                                   progress_offset=params.steps, progress_total=total)
    if tally is None:
        return None
    return {**metrics, **tally.metrics(racers, prefix="best ")}


# ----------------------------------------------------------------------------------------------
# The theory, checked at the end.


def theory(params: OptimizersParams, surface: Surface, racers: list[Racer], rules: list[Rule],
           theta0: torch.Tensor, ctx: RunContext) -> Iterator[Frame]:
    """The checks that apply to this surface, and the theory chart; returns the checks."""
    labels = [r.label for r in racers]
    checks = [check_torch_agreement(surface, labels, rules, theta0,
                                    min(params.steps, TORCH_STEPS))]
    eps_check, gd, eps_curves = check_eps_critical(surface, theta0, params.steps)
    checks.append(eps_check)
    traces = theory_traces(surface)
    right = len(traces) - 2
    idx = decimate(params.steps)
    t = np.concatenate([[0.0], idx.astype(np.float64)])  # log x: t = 0 is not drawn
    steps_x, ys = [], []
    if surface.name == "quadratic":
        rate_check, bound = check_linear_rate(surface, gd)
        nag_check, nag_gaps, nag_bound, hb_gaps = check_nesterov_bound(
            surface, theta0, params.steps)
        checks += [rate_check, nag_check]
        if surface.L / surface.mu >= SPEEDUP_MIN_KAPPA:
            checks += check_speedups(surface)
        pick = np.concatenate([[0], idx])
        for series in (_np(gd.gaps), bound, nag_gaps, nag_bound, hb_gaps):
            steps_x.append(t)
            ys.append(series[pick])
    elif surface.name == "noisy_quadratic":
        if ctx.should_stop():
            return None
        checks.append(check_sgd_variance(surface, theta0, params.batch, ctx.generator))
        rate_check, curves = check_sgd_rate(surface, theta0, params.batch, ctx.generator)
        checks.append(rate_check)
        steps_x += [curves["t"], curves["t"]]
        ys += [curves["mean"], curves["fit"]]
    else:
        steps_x.append(t)
        ys.append(_np(gd.gaps)[np.concatenate([[0], idx])])
    steps_x += [eps_curves["t"], eps_curves["t"]]
    ys += [eps_curves["best"], eps_curves["bound"]]
    indices = list(range(right)) + [right, right + 1]
    yield restyle("theory", indices, x=steps_x, y=ys)
    return checks


# ----------------------------------------------------------------------------------------------
# The run.


def run(params: OptimizersParams, ctx: RunContext) -> Iterator[Frame]:
    """Stream the race (or cloud, or grid), then check the theory on the same surface."""
    device = ctx.device
    surface = surface_of(params, device)
    racers = chosen(params)
    rules = [rule_of(r.key, params) for r in racers]
    theta0 = torch.tensor([params.x0, params.y0], dtype=DTYPE, device=device)
    if params.mode == "race":
        tally = yield from stream_race(params, surface, racers, rules, theta0, ctx)
        metrics = None if tally is None else tally.metrics(racers)
    elif params.mode == "cloud":
        metrics = yield from stream_cloud(params, surface, racers, rules, theta0, ctx)
    else:
        metrics = yield from stream_grid(params, surface, racers, theta0, ctx)
    if metrics is None or ctx.should_stop():
        return
    checks = yield from theory(params, surface, racers, rules, theta0, ctx)
    if checks is None or ctx.should_stop():
        return
    metrics["h(θ₀) − min h"] = float(surface.gap(theta0))
    if surface.A is not None:
        metrics["κ = L/μ"] = surface.L / surface.mu
    yield finish(checks, **metrics)


experiment = Experiment(
    slug="optimizers",
    title="Optimizer race: GD, momentum, Nesterov, AdaGrad, RMSprop, Adam, SGD",
    section=Section("1.3", "Gradient-based learning", chapter="1 History"),
    summary=(
        "Gradient descent, heavy ball, Nesterov, AdaGrad, RMSprop, Adam (as Kingma & Ba, and as "
        "printed on the sheet) and SGD race from the same start on an ill-conditioned quadratic, "
        "Rosenbrock, Beale, Himmelblau, a saddle or a noisy least-squares problem: their paths "
        "on the contour map, h − min h and the distance to the minimum step by step. Click the "
        "map to move the start; sweep a cloud of starts or a grid of η × β. At the end the "
        "update rules are checked against torch.optim and GD with η = 1/L against the "
        "ε-critical bound, the linear rate and the √κ speed-up of momentum."
    ),
    formulas=FORMULAS,
    Params=OptimizersParams,
    figures=figures,
    run=run,
    clicks=(ClickInput("surface", x="x0", y="y0"),),
)
