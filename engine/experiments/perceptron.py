r"""1.1 Perceptron: the threshold unit, its margin, and Novikoff's mistake bound.

The cheat sheet, corrected per ERRATA.md (E-1.1-1, A-1.1-2, G-1.1-3):

* threshold unit :math:`f[w,b](x) = \operatorname{sign}(x^\top w + b)`; its decision boundary is
  the zero set :math:`\{x \mid x^\top w + b = 0\}`, a hyperplane with unit normal
  :math:`w/\|w\|` at signed offset :math:`-b/\|w\|`;
* augmented vectors :math:`x^\top w + b = \tilde x^\top \tilde w` with
  :math:`\tilde x = (x, 1)`, :math:`\tilde w = (w, b)`;
* geometric margin :math:`\gamma[w,b](x,y) = y\,(x^\top w + b)/\|w\|`, and
  :math:`\gamma[w,b](S) = \min_{(x,y)\in S}\gamma[w,b](x,y)`;
* perceptron learning: if :math:`f[w,b](x) \neq y` then :math:`w \leftarrow w + yx`,
  :math:`b \leftarrow b + y`, so :math:`w_0 = 0` keeps :math:`w_t` in the span of the data;
* Novikoff (1962): if :math:`\|u\| = 1` and :math:`y\,x^\top u \ge \gamma > 0` on :math:`S`,
  :math:`w_0 = 0` and :math:`R = \max_S \|x\|`, then after :math:`t` updates
  :math:`\langle w_t, u\rangle \ge t\gamma` and :math:`\|w_t\| \le R\sqrt t`, hence
  :math:`t \le R^2/\gamma^2`. The bound is for homogeneous separation; with a bias it holds
  for the augmented :math:`\tilde x`, :math:`\tilde u`, with :math:`R = \max_S\|\tilde x\|`.

References: Rosenblatt (1958); Novikoff, *On convergence proofs for perceptrons* (1962);
Bishop, *PRML* §4.1.1 and §4.1.7.

The run draws separable data, streams the perceptron's updates (the moving boundary, the two
inequalities, the mistake count, the margin), and ends with the checks of CHECKS.md 1.1.
All math is float64 on ``ctx.device``; numpy only at the edge (frames, scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
from pydantic import Field, ValidationInfo, field_validator
from sklearn.svm import SVC

from engine.core import (
    Check,
    Experiment,
    Formula,
    Frame,
    Params,
    RunContext,
    Section,
    extend,
    finish,
    relayout,
    restyle,
)

DTYPE = torch.float64
SLACK = 1e-9  # the absolute slack of the "at every update" inequalities (CHECKS.md, type bound)
SPAN_TOL = 1e-9  # relative residual below which w_t counts as lying in the span
MARGIN_SAMPLES = 32  # updates per drawn batch whose margin γ[w_t, b_t](S) is computed


class PerceptronParams(Params):
    """Data, model and budget of one perceptron run; bounds keep a CPU run within ~2 s."""

    n: int = Field(2, ge=2, le=50, description="Dimension n of the inputs x.")
    s: int = Field(200, ge=10, le=2000, description="Number s of training points.")
    gamma: float = Field(
        0.1,
        ge=0.01,
        le=0.5,
        description="Margin γ: no point lies closer than γ to the true boundary.",
    )
    R: float = Field(
        1.0, ge=0.1, le=10.0, description="Radius R of the ball the points are drawn in."
    )
    bias: Literal["none", "augmented"] = Field(
        "none",
        description="'none': homogeneous perceptron (b = 0). 'augmented': learn b too, by running "
        "on x̃ = (x, 1), w̃ = (w, b), the form in which Novikoff's bound holds with a bias.",
    )
    offset: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="Shift of the data along u, in units of R, so that the true boundary misses "
        "the origin by offset·R. Needs bias='augmented'.",
    )
    max_epochs: int = Field(
        100, ge=1, le=1000, description="Passes over the data at most; a clean pass ends the run."
    )
    max_updates: int = Field(
        5000, ge=1, le=20000, description="Updates (mistakes) at most, whatever the epoch."
    )

    # Cross-field rules as field validators (fields are validated in declaration order), so
    # that an error names the field to change rather than the whole model.
    @field_validator("R")
    @classmethod
    def _R_exceeds_gamma(cls, R: float, info: ValidationInfo) -> float:
        gamma = info.data.get("gamma")
        if gamma is not None and gamma >= R:
            raise ValueError(
                f"R must exceed gamma (the points lie in a ball of radius R, at least gamma "
                f"from the boundary), got R={R}, gamma={gamma}"
            )
        return R

    @field_validator("offset")
    @classmethod
    def _offset_needs_bias(cls, offset: float, info: ValidationInfo) -> float:
        if offset != 0 and info.data.get("bias") == "none":
            raise ValueError(
                f"offset={offset} needs bias='augmented': a boundary that misses the origin "
                "cannot be learnt with b = 0"
            )
        return offset


# ----------------------------------------------------------------------------------------------
# The threshold unit and its geometry (pure functions on tensors).


def threshold_unit(X: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor = 0.0) -> torch.Tensor:
    r"""The threshold unit :math:`f[w,b](x) = \operatorname{sign}(x^\top w + b)` for each row of X.

    X: (s, n), w: (n,); returns (s,) in {-1, 0, +1}.
    """
    return torch.sign(X @ w + b)


def augment(X: torch.Tensor) -> torch.Tensor:
    r"""Augmented inputs :math:`\tilde x = (x, 1)`: :math:`x^\top w + b = \tilde x^\top\tilde w`."""
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)


def project_onto_boundary(
    X: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor = 0.0
) -> torch.Tensor:
    r"""Orthogonal projection onto the boundary, :math:`x' = x - \frac{x^\top w + b}{\|w\|^2}w`."""
    return X - ((X @ w + b) / (w @ w))[:, None] * w


def geometric_margin(
    w: torch.Tensor, b: float | torch.Tensor, X: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    r"""Per-point geometric margin :math:`\gamma[w,b](x,y) = y\,\frac{x^\top w + b}{\|w\|}`."""
    norm_w = torch.linalg.vector_norm(w)
    if norm_w == 0:
        raise ValueError("the geometric margin needs w != 0 (w = 0 defines no boundary)")
    return y * (X @ w + b) / norm_w


def dataset_margin(
    w: torch.Tensor, b: float | torch.Tensor, X: torch.Tensor, y: torch.Tensor
) -> float:
    r"""Margin of a set :math:`\gamma[w,b](S) = \min_{(x,y)\in S}\gamma[w,b](x,y)`, a float."""
    return float(geometric_margin(w, b, X, y).min())


def span_residual(w: torch.Tensor, V: torch.Tensor) -> float:
    r"""Relative distance of w from :math:`\operatorname{span}` of the rows of V (k, d).

    :math:`\|(I - QQ^\top)w\| / \|w\|` with :math:`Q` from the reduced QR of :math:`V^\top`, the
    orthogonal projector onto the span (rows assumed independent, as for points in general
    position; when k >= d the span is the whole space and the residual is rounding only).
    """
    Q, _ = torch.linalg.qr(V.T)  # (d, min(d, k))
    residual = w - Q @ (Q.T @ w)
    return float(torch.linalg.vector_norm(residual) / torch.linalg.vector_norm(w))


def max_margin_separator(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    r"""The max-margin separator :math:`(w^*, b^*) \in \operatorname{argmax}_{w,b}\gamma[w,b](S)`.

    A linear SVC with C = 1e8 is the hard-margin SVM for separable data; its margin is
    :math:`1/\|w^*\|`. scikit-learn works on the CPU in float64, so the data is copied there.
    """
    svm = SVC(kernel="linear", C=1e8).fit(X.cpu().numpy(), y.cpu().numpy())
    w_star = torch.tensor(np.array(svm.coef_[0]), dtype=DTYPE, device=X.device)
    return w_star, float(svm.intercept_[0])


# ----------------------------------------------------------------------------------------------
# Data and training.


@dataclass(frozen=True)
class SeparableData:
    r"""Points X (s, n), labels y (s,) in {-1, +1}, and the true separator :math:`(u, c)`.

    Every point satisfies :math:`y\,(x^\top u + c) \ge \gamma` with :math:`\|u\| = 1`.
    """

    X: torch.Tensor
    y: torch.Tensor
    u: torch.Tensor
    c: float


def make_separable_data(
    n: int,
    s: int,
    gamma: float,
    R: float,
    offset: float = 0.0,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> SeparableData:
    r"""s points in the ball of radius R with the slab :math:`|u^\top z| < \gamma` emptied.

    1. Draw a unit :math:`u` and :math:`z` uniform in the ball (Gaussian direction, radius
       :math:`R\,U^{1/n}`).
    2. Stretch the coordinate along u out of the slab, :math:`t = u^\top z \mapsto t' =
       \operatorname{sign}(t)\,(\gamma + |t|\,(1 - \gamma/R))`, and rescale the orthogonal part
       by :math:`\sqrt{(R^2 - t'^2)/(R^2 - t^2)}`, which maps each slice of the ball onto the
       slice at :math:`t'`: the points stay in the ball, and no rejection means s is exact.
    3. Label :math:`y = \operatorname{sign}(u^\top z)` and shift :math:`x = z - c\,u` with
       :math:`c = \text{offset}\cdot R`: the true boundary is :math:`x^\top u + c = 0`.
    """
    if not 0 < gamma < R:
        raise ValueError(f"need 0 < gamma < R, got gamma={gamma}, R={R}")
    u = torch.randn(n, generator=generator, dtype=DTYPE, device=device)
    u = u / torch.linalg.vector_norm(u)
    direction = torch.randn(s, n, generator=generator, dtype=DTYPE, device=device)
    direction = direction / torch.linalg.vector_norm(direction, dim=1, keepdim=True)
    radius = R * torch.rand(s, 1, generator=generator, dtype=DTYPE, device=device) ** (1.0 / n)
    z = radius * direction  # (s, n), uniform in the ball
    t = z @ u  # (s,)
    sign_t = torch.where(t >= 0, 1.0, -1.0).to(DTYPE)
    t_new = sign_t * (gamma + t.abs() * (1.0 - gamma / R))
    z_perp = z - t[:, None] * u  # (s, n), orthogonal to u
    # The clamps only guard rounding: |t'| <= R, and where |t| = R, z_perp = 0 anyway.
    shrink = torch.sqrt(
        torch.clamp(R**2 - t_new**2, min=0.0) / torch.clamp(R**2 - t**2, min=1e-300)
    )
    z = z_perp * shrink[:, None] + t_new[:, None] * u
    c = offset * R
    return SeparableData(X=z - c * u, y=sign_t, u=u, c=c)


@dataclass(frozen=True)
class Update:
    """One perceptron update: the t-th mistake, on point i, in epoch ``epoch`` (from 1)."""

    t: int
    i: int
    epoch: int
    seen: int  # examples looked at so far, this one included
    w: torch.Tensor  # w_t, after the update (a fresh tensor, never mutated later)


def perceptron_updates(X: torch.Tensor, y: torch.Tensor, max_epochs: int) -> Iterator[Update]:
    r"""Homogeneous perceptron from :math:`w_0 = 0`: :math:`w_t = w_{t-1} + y_i x_i` on a mistake.

    A mistake is :math:`f[w](x_i) \ne y_i`, i.e. :math:`y_i\,x_i^\top w \le 0` (sign(0) = 0 is
    never a label). Pass :func:`augment`-ed inputs to learn a bias. The points are visited in
    order; between two mistakes w is fixed, so the next mistake is found with one vectorised
    scan. Stops after a pass with no mistake or after ``max_epochs`` passes.
    """
    s, d = X.shape
    w = torch.zeros(d, dtype=X.dtype, device=X.device)
    t = 0
    for epoch in range(1, max_epochs + 1):
        start, mistakes_in_epoch = 0, 0
        while start < s:
            wrong = (y[start:] * (X[start:] @ w) <= 0).nonzero()
            if wrong.numel() == 0:
                break
            i = start + int(wrong[0, 0])
            w = w + y[i] * X[i]
            t += 1
            mistakes_in_epoch += 1
            yield Update(t=t, i=i, epoch=epoch, seen=(epoch - 1) * s + i + 1, w=w)
            start = i + 1
        if mistakes_in_epoch == 0:
            return


@dataclass(frozen=True)
class PerceptronResult:
    """w_T, the history W (T+1, d) with W[0] = w_0 = 0, the updated indices (T,), convergence."""

    w: torch.Tensor
    W: torch.Tensor
    mistakes: torch.Tensor
    converged: bool


def train_perceptron(X: torch.Tensor, y: torch.Tensor, max_epochs: int = 1000) -> PerceptronResult:
    """Run :func:`perceptron_updates` to the end and keep every w_t."""
    updates = list(perceptron_updates(X, y, max_epochs))
    W = torch.stack(
        [torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)] + [u.w for u in updates]
    )
    mistakes = torch.tensor([u.i for u in updates], dtype=torch.long, device=X.device)
    converged = bool((y * (X @ W[-1]) > 0).all())
    return PerceptronResult(w=W[-1], W=W, mistakes=mistakes, converged=converged)


# ----------------------------------------------------------------------------------------------
# The page: formulas, figures, run.

FORMULAS = (
    Formula("Threshold unit", r"f[w,b](x) = \operatorname{sign}(x^\top w + b)"),
    Formula(
        "Decision boundary",
        r"\{x \mid x^\top w + b = 0\} = \{x \mid \tfrac{x^\top w}{\|w\|} + \tfrac{b}{\|w\|} = 0\}",
        erratum="E-1.1-1",
    ),
    Formula(
        "Augmented vectors",
        r"x^\top w + b = \tilde x^\top \tilde w,\quad \tilde x = (x, 1),\ \tilde w = (w, b)"
        r" \in \mathbb{R}^{n+1}",
        erratum="A-1.1-2",
    ),
    Formula(
        "Geometric margin",
        r"\gamma[w,b](x,y) := y\,\frac{x^\top w + b}{\|w\|},\quad"
        r" \gamma[w,b](S) := \min_{(x,y) \in S} \gamma[w,b](x,y)",
    ),
    Formula(
        "Maximum margin classifier", r"(w^*, b^*) \in \operatorname{argmax}_{w,b} \gamma[w,b](S)"
    ),
    Formula(
        "Perceptron learning",
        r"f[w,b](x) \neq y \Rightarrow w \leftarrow w + yx,\ b \leftarrow b + y",
    ),
    Formula(
        "Span property",
        r"w_0 \in \operatorname{span}(x_1,\dots,x_s) \Rightarrow"
        r" w_t \in \operatorname{span}(x_1,\dots,x_s)\ \forall t",
    ),
    Formula(
        "Novikoff convergence",
        r"\|u\| = 1,\ y\,x^\top u \ge \gamma > 0,\ w_0 = 0,\ R = \max_{x \in S}\|x\|"
        r" \Rightarrow \langle w_t, u\rangle \ge t\gamma,\ \|w_t\| \le R\sqrt{t},\ "
        r"\sqrt{t}\,\tfrac{\gamma}{R} \le \cos\angle(u, w_t) \le 1"
        r" \Rightarrow t \le \tfrac{R^2}{\gamma^2}",
        erratum="G-1.1-3",
    ),
)

# Trace indices, named so that run() and figures() cannot drift apart.
DATA_POS, DATA_NEG, DATA_TRUE, DATA_PERCEPTRON, DATA_MISTAKE, DATA_SVM = range(6)
BOUNDS_INNER, BOUNDS_NORM, BOUNDS_TGAMMA, BOUNDS_RSQRT, BOUNDS_T_MAX = range(5)
MARGIN_PERCEPTRON, MARGIN_TRUE, MARGIN_SVM = range(3)


def figures(params: PerceptronParams) -> dict[str, go.Figure]:
    """The four charts, with empty traces that the run fills."""
    axis_x, axis_y = ("x₁", "x₂") if params.n == 2 else ("⟨u, x⟩", "⟨v, x⟩")
    view = "" if params.n == 2 else " (projected onto span(u, v), v ∝ w* − ⟨w*, u⟩u)"

    def line(name, color, dash="solid", mode="lines", shape="linear"):
        style = dict(color=color, dash=dash, shape=shape)
        return go.Scatter(x=[], y=[], name=name, mode=mode, line=style)

    data = go.Figure(
        [
            go.Scatter(
                x=[], y=[], name="y = +1", mode="markers", marker=dict(color="#1f77b4", size=5)
            ),
            go.Scatter(
                x=[], y=[], name="y = −1", mode="markers", marker=dict(color="#d62728", size=5)
            ),
            line("true boundary u", "#555555", "dash"),
            line("perceptron w_t", "#2ca02c"),
            go.Scatter(
                x=[],
                y=[],
                name="last mistake",
                mode="markers",
                marker=dict(symbol="circle-open", size=14, line=dict(width=2), color="#2ca02c"),
            ),
            line("max margin w*", "#9467bd", "dot"),
        ],
        layout=dict(
            title=f"Data and decision boundaries{view}",
            xaxis=dict(title=axis_x),
            yaxis=dict(title=axis_y, scaleanchor="x", scaleratio=1),
        ),
    )
    bounds = go.Figure(
        [
            line("⟨w_t, u⟩", "#1f77b4", mode="lines+markers"),
            line("‖w_t‖", "#d62728", mode="lines+markers"),
            line("tγ (lower bound)", "#1f77b4", "dash"),
            line("R√t (upper bound)", "#d62728", "dash"),
            line("t = R²/γ²", "#555555", "dot"),
        ],
        layout=dict(
            title="Novikoff: tγ ≤ ⟨w_t, u⟩ ≤ ‖w_t‖ ≤ R√t, so t ≤ R²/γ²",
            xaxis=dict(title="update t", type="log"),
            yaxis=dict(title="length", type="log"),
        ),
    )
    mistakes = go.Figure(
        [line("updates t", "#2ca02c", shape="hv")],
        layout=dict(
            title="Mistakes (updates) while streaming the data",
            xaxis=dict(title="examples seen"),
            yaxis=dict(title="updates t", rangemode="tozero"),
        ),
    )
    margin = go.Figure(
        [
            line("γ[w_t, b_t](S) perceptron", "#2ca02c", mode="lines+markers"),
            line("γ of the true boundary", "#555555", "dash"),
            line("γ(S) max margin", "#9467bd", "dot"),
        ],
        layout=dict(
            title="Geometric margin γ[w, b](S) = min y(xᵀw + b)/‖w‖",
            xaxis=dict(title="update t"),
            yaxis=dict(title="margin"),
        ),
    )
    return {"data": data, "bounds": bounds, "mistakes": mistakes, "margin": margin}


def _view_basis(u: torch.Tensor, w_star: torch.Tensor) -> torch.Tensor:
    """(n, 2) orthonormal basis of the drawing plane: the axes for n = 2, else span(u, w*).

    With u and w* in the plane, both their boundaries appear as exact lines and every projected
    point keeps its distance to them; the perceptron's line is where its hyperplane cuts the plane.
    """
    n = u.shape[0]
    if n == 2:
        return torch.eye(2, dtype=u.dtype, device=u.device)
    v = w_star - (w_star @ u) * u
    if torch.linalg.vector_norm(v) < 1e-9 * torch.linalg.vector_norm(w_star):
        # w* parallel to u: any direction orthogonal to u will do; take the axis least along u.
        v = torch.zeros_like(u)
        v[int(u.abs().argmin())] = 1.0
        v = v - (v @ u) * u
    return torch.stack([u, v / torch.linalg.vector_norm(v)], dim=1)


def _boundary_segment(
    w: torch.Tensor, b: float, basis: torch.Tensor, half_width: float
) -> tuple[np.ndarray, np.ndarray]:
    """The line {p: ⟨Bᵀw, p⟩ + b = 0} of the drawing plane, clipped to the square ±half_width."""
    a = (basis.T @ w).cpu().numpy()  # (2,)
    norm2 = float(a @ a)
    if norm2 == 0.0:
        return np.empty(0), np.empty(0)
    p0 = -b * a / norm2  # the point of the line nearest the origin
    direction = np.array([-a[1], a[0]])
    lo, hi = -math.inf, math.inf
    for k in range(2):
        if direction[k] == 0.0:
            if abs(p0[k]) > half_width:
                return np.empty(0), np.empty(0)
            continue
        t1, t2 = (-half_width - p0[k]) / direction[k], (half_width - p0[k]) / direction[k]
        lo, hi = max(lo, min(t1, t2)), min(hi, max(t1, t2))
    if lo > hi:
        return np.empty(0), np.empty(0)
    ends = p0[None, :] + np.array([lo, hi])[:, None] * direction[None, :]  # (2, 2)
    return ends[:, 0], ends[:, 1]


def _frame_schedule(t: int) -> int:
    """The next update count at which to draw: every update at first, then ~25 % apart.

    Geometric spacing keeps the frame count logarithmic in the number of updates (about 50
    drawings for 20 000 updates) while the early, fast-moving boundary is shown step by step.
    """
    return t + max(1, t // 4)


def run(params: PerceptronParams, ctx: RunContext) -> Iterator[Frame]:
    """Draw the data, stream the perceptron, then check Novikoff, the span and the margins."""
    device = ctx.device
    augmented = params.bias == "augmented"
    data = make_separable_data(
        params.n,
        params.s,
        params.gamma,
        params.R,
        params.offset,
        generator=ctx.generator,
        device=device,
    )
    X, y, u, c = data.X, data.y, data.u, data.c

    # 1. Novikoff's quantities, measured on the sample, for the vectors the perceptron runs on.
    if augmented:
        X_run = augment(X)  # (s, n + 1)
        u_run = torch.cat([u, torch.tensor([c], dtype=DTYPE, device=device)])
        u_run = u_run / torch.linalg.vector_norm(u_run)
    else:
        X_run, u_run = X, u
    R = float(torch.linalg.vector_norm(X_run, dim=1).max())
    gamma = float((y * (X_run @ u_run)).min())
    bound = R**2 / gamma**2
    gamma_true = dataset_margin(u, c, X, y)  # the sheet's γ[u, c](S), in x-space

    w_star, b_star = max_margin_separator(X, y)
    gamma_svm = dataset_margin(w_star, b_star, X, y)

    basis = _view_basis(u, w_star)
    P = (X @ basis).cpu().numpy()  # (s, 2)
    half_width = 1.05 * float(np.abs(P).max())
    y_np = y.cpu().numpy()
    true_x, true_y = _boundary_segment(u, c, basis, half_width)
    yield relayout(
        "data",
        **{"xaxis.range": [-half_width, half_width], "yaxis.range": [-half_width, half_width]},
    )
    yield restyle(
        "data",
        [DATA_POS, DATA_NEG, DATA_TRUE],
        x=[P[y_np > 0, 0], P[y_np < 0, 0], true_x],
        y=[P[y_np > 0, 1], P[y_np < 0, 1], true_y],
    )
    t_ref = np.geomspace(1.0, bound, 60)
    yield restyle(
        "bounds",
        [BOUNDS_TGAMMA, BOUNDS_RSQRT, BOUNDS_T_MAX],
        x=[t_ref, t_ref, np.array([bound, bound])],
        y=[gamma * t_ref, R * np.sqrt(t_ref), np.array([gamma, R * math.sqrt(bound)])],
    )

    # 2. Stream the updates, drawn in geometrically growing batches.
    budget = params.max_epochs * params.s
    worst_inner = (math.inf, 0)  # min over t of ⟨w_t, u⟩ − tγ, and that t
    worst_norm = (-math.inf, 0)  # max over t of ‖w_t‖ − R√t, and that t

    def draw(batch: list[Update]) -> list[Frame]:
        nonlocal worst_inner, worst_norm
        W = torch.stack([b.w for b in batch])  # (k, d)
        t = torch.tensor([b.t for b in batch], dtype=DTYPE, device=device)  # (k,)
        inner = W @ u_run  # ⟨w_t, u⟩
        norm = torch.linalg.vector_norm(W, dim=1)  # ‖w_t‖
        gap_inner, gap_norm = inner - t * gamma, norm - R * torch.sqrt(t)
        k = int(gap_inner.argmin())
        worst_inner = min(worst_inner, (float(gap_inner[k]), batch[k].t))
        k = int(gap_norm.argmax())
        worst_norm = max(worst_norm, (float(gap_norm[k]), batch[k].t))
        w_part, b_part = (W[:, :-1], W[:, -1]) if augmented else (W, torch.zeros_like(t))
        # γ[w_t, b_t](S) costs a pass over S per w_t: sample at most MARGIN_SAMPLES per batch.
        sample = np.unique(np.linspace(0, len(batch) - 1, MARGIN_SAMPLES).round().astype(int))
        sample_t = torch.from_numpy(sample).to(device)
        margins = (y * (W[sample_t] @ X_run.T)).min(dim=1).values  # min y(xᵀw + b), (k',)
        margins = margins / torch.linalg.vector_norm(w_part[sample_t], dim=1)
        t_np, inner_np, norm_np = t.cpu().numpy(), inner.cpu().numpy(), norm.cpu().numpy()
        last = batch[-1]
        line_x, line_y = _boundary_segment(w_part[-1], float(b_part[-1]), basis, half_width)
        boundary = restyle(
            "data",
            [DATA_PERCEPTRON, DATA_MISTAKE],
            x=[line_x, P[last.i, :1]],
            y=[line_y, P[last.i, 1:]],
        )
        boundary.metrics = dict(
            mistakes=last.t, bound=bound, epoch=last.epoch, margin=float(margins[-1])
        )
        boundary.progress = (last.seen, budget)
        seen = np.array([b.seen for b in batch], dtype=np.float64)
        return [
            extend("mistakes", [0], x=[seen], y=[t_np]),
            extend("bounds", [BOUNDS_INNER, BOUNDS_NORM], x=[t_np, t_np], y=[inner_np, norm_np]),
            extend("margin", [MARGIN_PERCEPTRON], x=[t_np[sample]], y=[margins.cpu().numpy()]),
            boundary,
        ]

    batch: list[Update] = []
    mistake_indices: set[int] = set()
    next_draw = 1
    for update in perceptron_updates(X_run, y, params.max_epochs):
        batch.append(update)
        mistake_indices.add(update.i)
        if update.t % 64 == 0 and ctx.should_stop():
            return
        if update.t >= next_draw or update.t >= params.max_updates:
            if ctx.should_stop():
                return
            yield from draw(batch)
            batch = []
            next_draw = _frame_schedule(update.t)
        if update.t >= params.max_updates:
            break
    if ctx.should_stop():
        return
    if batch:
        yield from draw(batch)

    # 3. The final checks, on w_T.
    last = update  # w_0 = 0 misclassifies the first point, so there was at least one update
    t_end = last.t
    w_T = last.w
    w_final, b_final = (w_T[:-1], float(w_T[-1])) if augmented else (w_T, 0.0)
    converged = bool((y * (X_run @ w_T) > 0).all())
    gamma_perceptron = dataset_margin(w_final, b_final, X, y)
    yield restyle(
        "margin",
        [MARGIN_TRUE, MARGIN_SVM],
        x=[np.array([0.0, t_end]), np.array([0.0, t_end])],
        y=[np.array([gamma_true, gamma_true]), np.array([gamma_svm, gamma_svm])],
    )
    svm_x, svm_y = _boundary_segment(w_star, b_star, basis, half_width)
    yield restyle("data", [DATA_SVM], x=[svm_x], y=[svm_y])

    mistake_points = X_run[torch.tensor(sorted(mistake_indices), device=device)]  # (k, d)
    d = X_run.shape[1]
    residual = span_residual(w_T, mistake_points)
    k_span = mistake_points.shape[0]
    space = (
        "the span is then all of ℝ^d, so this only shows rounding"
        if k_span >= d
        else "a proper subspace"
    )
    vectors = "augmented x̃ = (x, 1), w̃ = (w, b), ũ = (u, c)/‖(u, c)‖" if augmented else "x, w, u"
    state = "converged" if converged else "not converged (budget spent)"
    run_on = f"run on {vectors}; R = {R:.4g} and γ = {gamma:.4g} measured on the sample"
    checks = [
        Check(
            name="Novikoff bound",
            formula=r"t \le \frac{R^2}{\gamma^2}",
            measured=t_end,
            reference=bound,
            relation="<=",
            passed=t_end <= bound,
            detail=f"{t_end} updates, {state}; {run_on}",
        ),
        Check(
            name="⟨w_t, u⟩ ≥ tγ at every update",
            formula=r"\min_t\, \big(\langle w_t, u\rangle - t\gamma\big) \ge 0",
            measured=worst_inner[0],
            reference=0.0,
            relation=">=",
            passed=worst_inner[0] >= -SLACK,
            detail=f"tightest at t = {worst_inner[1]} of {t_end}; slack {SLACK:g}; {run_on}",
        ),
        Check(
            name="‖w_t‖ ≤ R√t at every update",
            formula=r"\max_t\, \big(\|w_t\| - R\sqrt{t}\big) \le 0",
            measured=worst_norm[0],
            reference=0.0,
            relation="<=",
            passed=worst_norm[0] <= SLACK,
            detail=f"tightest at t = {worst_norm[1]} of {t_end}; slack {SLACK:g}; {run_on}",
        ),
        Check(
            name="w_t stays in the span of the data",
            formula=r"\frac{\|(I - P_{\operatorname{span}})\,w_T\|}{\|w_T\|}",
            measured=residual,
            reference=SPAN_TOL,
            relation="<",
            passed=residual < SPAN_TOL,
            detail=f"projector by QR onto the span of the {k_span} distinct points that caused "
            f"updates, in d = {d} dimensions: {space}",
        ),
        Check(
            name="max margin ≥ perceptron margin",
            formula=r"\gamma[w^*, b^*](S) \ge \gamma[w_T, b_T](S)",
            measured=gamma_svm,
            reference=gamma_perceptron,
            relation=">=",
            passed=gamma_svm >= gamma_perceptron,
            detail="(w*, b*) from SVC(kernel='linear', C=1e8); margins with the sheet's "
            "γ[w, b](S) = min y(xᵀw + b)/‖w‖ in x-space",
        ),
    ]
    yield finish(
        checks,
        mistakes=t_end,
        bound=bound,
        epoch=last.epoch,
        converged="yes" if converged else "no",
        R=R,
        gamma=gamma,
        margin=gamma_perceptron,
        max_margin=gamma_svm,
    )


experiment = Experiment(
    slug="perceptron",
    title="Perceptron learning and Novikoff's bound",
    section=Section("1.1", "Perceptron", chapter="1 History"),
    summary=(
        "Linearly separable points with margin γ in a ball of radius R are streamed through the "
        "perceptron rule w ← w + yx from w₀ = 0. Watch the boundary move with each mistake, "
        "⟨w_t, u⟩ climb above tγ while ‖w_t‖ stays below R√t, and the mistake count stay under "
        "Novikoff's R²/γ². At the end the perceptron's margin is compared with the "
        "maximum-margin separator."
    ),
    formulas=FORMULAS,
    Params=PerceptronParams,
    figures=figures,
    run=run,
)
