r"""1.1 Cover's function counting theorem: how many dichotomies a hyperplane can realise.

The cheat sheet, corrected per ERRATA.md (A-1.1-4, E-1.1-5):

* :math:`C(s, n)` is the number of dichotomies (labellings :math:`y \in \{-1,+1\}^s`) of
  :math:`s` points **in general position** in :math:`\mathbb R^n` that a hyperplane **through
  the origin** separates, i.e. for which some :math:`w` has :math:`y_i\,x_i^\top w > 0` for all
  :math:`i`:

  .. math:: C(s, n) = 2\sum_{i=0}^{n-1}\binom{s-1}{i},

  so :math:`C(s, n) = 2^s` for :math:`s \le n` and :math:`C(s+1, n) = C(s, n) + C(s, n-1)`.
  With a bias, replace :math:`n` by :math:`n+1`.
* the phase transition (the sheet has the two regimes swapped):
  :math:`C(s,n)/2^s \to 1` for :math:`s/n < 2`, :math:`\to 0` for :math:`s/n > 2`, and
  :math:`C(2n, n) = 2^{2n-1}`, so at :math:`s = 2n` the probability is exactly :math:`1/2`.

Reference: T. M. Cover, *Geometrical and statistical properties of systems of linear
inequalities with applications in pattern recognition* (1965); Hertz, Krogh & Palmer,
*Introduction to the Theory of Neural Computation* §5.7.

The run draws Gaussian point sets (in general position almost surely) with uniformly random
labels, decides separability of each one exactly with a linear program, and compares the
separable fraction with :math:`C(s,n)/2^s`. Everything is numpy/scipy on the CPU: the work is
the LP solver, which torch does not have.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import plotly.graph_objects as go
from pydantic import Field, model_validator
from scipy import sparse
from scipy.optimize import linprog
from scipy.stats import binomtest, norm

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
    status,
)

Z_MAX = 4.0  # accept |fraction - C(s,n)/2^s| <= Z_MAX standard errors (CHECKS.md 1.1-f)
RATIO_STEP = 0.25  # the grid of s/n; it contains s/n = 2 for every n
BLOCK_NONZEROS = 4000  # nonzeros per batched LP: larger LPs solve slower than several small ones
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


class CoverParams(Params):
    """Which dimensions, how far in s/n, and how many random dichotomies per point."""

    n_min: int = Field(
        2, ge=1, le=16, description="Smallest dimension n; curves for n = n_min, 2n_min, 4n_min, …"
    )
    n_max: int = Field(
        16, ge=1, le=16, description="Largest dimension n; the doubling stops at n_max."
    )
    ratio_max: float = Field(
        4.0, ge=2.5, le=4.0, description="Largest load s/n (number of points per dimension)."
    )
    trials: int = Field(
        200, ge=20, le=300, description="Random point sets (with random labels) per (n, s)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> CoverParams:
        if self.n_min > self.n_max:
            raise ValueError(f"n_min must be <= n_max, got n_min={self.n_min}, n_max={self.n_max}")
        return self


# ----------------------------------------------------------------------------------------------
# Counting (exact integers).


def cover_count(s: int, n: int) -> int:
    r"""Cover's count :math:`C(s, n) = 2\sum_{i=0}^{n-1}\binom{s-1}{i}`, an exact integer.

    ``n = 0`` gives the empty sum 0 (no hyperplane in :math:`\mathbb R^0`), which makes the
    recursion :math:`C(s+1, 1) = C(s, 1) + C(s, 0)` hold.
    """
    if s < 1 or n < 0:
        raise ValueError(f"C(s, n) needs s >= 1 and n >= 0, got s={s}, n={n}")
    return 2 * sum(math.comb(s - 1, i) for i in range(n))


def separable_probability(s: int, n: int) -> float:
    r""":math:`C(s, n)/2^s`, the chance that random labels are separable (correctly rounded)."""
    return cover_count(s, n) / 2**s


def dimensions(n_min: int, n_max: int) -> list[int]:
    """The doubling ladder n_min, 2 n_min, 4 n_min, … that stays <= n_max."""
    dims = [n_min]
    while 2 * dims[-1] <= n_max:
        dims.append(2 * dims[-1])
    return dims


def point_counts(n: int, ratio_max: float) -> list[int]:
    """The s values of the grid s/n = 0.25, 0.5, …, ratio_max, rounded, distinct, s >= 1."""
    ratios = np.arange(1, math.floor(ratio_max / RATIO_STEP + 1e-9) + 1) * RATIO_STEP
    return sorted({max(1, round(r * n)) for r in ratios})


# ----------------------------------------------------------------------------------------------
# Separability (exact, by linear programming).


def is_separable(x: np.ndarray, y: np.ndarray) -> bool:
    r"""Whether some :math:`w` has :math:`y_i\,x_i^\top w \ge 1` for all i (homogeneous).

    x: (s, n), y: (s,) in {-1, +1}. Strict separation :math:`y_i x_i^\top w > 0` and the margin-1
    form are equivalent (scale w), so this LP feasibility problem decides separability exactly.
    """
    s, n = x.shape
    result = linprog(
        np.zeros(n),
        A_ub=-(y[:, None] * x),
        b_ub=-np.ones(s),
        bounds=[(None, None)] * n,
        method="highs",
    )
    if result.status == 0:
        return True
    if result.status == 2:
        return False
    raise RuntimeError(f"linprog could not decide separability: status {result.status}, "
                       f"{result.message}")


def are_separable(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Separability of T point sets at once: x (T, s, n), y (T, s) → bool (T,).

    One LP per block of sets, each set with its own :math:`w_k` and a slack :math:`t_k \ge 0`:

    .. math:: \min \sum_k t_k \quad\text{s.t.}\quad y_{ki}\,x_{ki}^\top w_k \ge 1 - t_k.

    The blocks are independent, so each :math:`t_k` is minimal on its own, and the minimum is
    exactly 0 or 1: any :math:`t_k < 1` makes :math:`y_{ki} x_{ki}^\top w_k > 0` for all i
    (separable, and scaling :math:`w_k` reaches :math:`t_k = 0`), while :math:`w_k = 0,
    t_k = 1` is always feasible. The LP is always feasible and bounded, so anything but
    status 0 is a solver failure; a :math:`t_k` off {0, 1} (never seen) falls back to
    :func:`is_separable`. Batching saves scipy's per-call overhead, which dominates small LPs.
    """
    T, s, n = x.shape
    per_block = max(1, min(T, BLOCK_NONZEROS // (s * (n + 1))))
    separable = np.empty(T, dtype=bool)
    for start in range(0, T, per_block):
        stop = min(T, start + per_block)
        t = _slack_lp(x[start:stop], y[start:stop])
        decided = np.minimum(t, 1.0 - t) < 1e-6
        separable[start:stop] = t < 0.5
        for k in np.flatnonzero(~decided):
            separable[start + k] = is_separable(x[start + k], y[start + k])
    return separable


def _slack_lp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The optimal slacks t_k (B,) of :func:`are_separable`'s block LP."""
    B, s, n = x.shape
    margins = -(y[..., None] * x)  # (B, s, n): the rows -y_i x_i^T of each block
    values = np.concatenate([margins, -np.ones((B, s, 1))], axis=2).reshape(-1)
    rows = np.repeat(np.arange(B * s), n + 1)
    cols = (np.arange(B)[:, None, None] * (n + 1) + np.arange(n + 1)).repeat(s, axis=1).ravel()
    A_ub = sparse.csr_array((values, (rows, cols)), shape=(B * s, B * (n + 1)))
    c = np.zeros((B, n + 1))
    c[:, n] = 1.0
    bounds = np.tile(np.array([[-np.inf, np.inf]] * n + [[0.0, np.inf]]), (B, 1))
    result = linprog(c.ravel(), A_ub=A_ub, b_ub=-np.ones(B * s), bounds=bounds, method="highs")
    if result.status != 0:
        raise RuntimeError(
            f"the slack LP is always feasible and bounded, yet linprog returned status "
            f"{result.status}: {result.message}"
        )
    return result.x.reshape(B, n + 1)[:, n]


def z_score(separable: int, trials: int, p: float) -> float:
    r"""How far ``separable`` of ``trials`` lies from :math:`p\,T`, as a normal deviate.

    The exact two-sided binomial p-value, mapped to the z with the same two-sided normal tail:
    :math:`z = \Phi^{-1}(1 - \text{p-value}/2)`, so z <= 4 is the "within 4 SE" of CHECKS.md
    with the tails right. Where :math:`pT` is small (s/n > 3) the normal SE
    :math:`\sqrt{p(1-p)/T}` badly understates them: two hits at p = 0.001, T = 200 would be
    "4 SE" out, yet happen in 1.8 % of runs. At p = 1 (s <= n) only T of T is possible (z = 0,
    else inf).
    """
    p_value = binomtest(separable, trials, p).pvalue
    return float(norm.isf(p_value / 2))


def _metric(z: float) -> float | str:
    """z for the metrics panel; an infinite z (a p-value that underflows) as the text "inf"."""
    return z if math.isfinite(z) else "inf"


def identity_violations(dims: list[int], s_max: int) -> list[str]:
    """Which of the three counting identities fail for n in dims, 1 <= s <= s_max (exact)."""
    failed = []
    for n in dims:
        failed += [f"C({s},{n}) != 2^{s}" for s in range(1, n + 1) if cover_count(s, n) != 2**s]
        failed += [
            f"C({s + 1},{n}) != C({s},{n}) + C({s},{n - 1})"
            for s in range(1, s_max)
            if cover_count(s + 1, n) != cover_count(s, n) + cover_count(s, n - 1)
        ]
        if cover_count(2 * n, n) != 2 ** (2 * n - 1):
            failed.append(f"C({2 * n},{n}) != 2^{2 * n - 1}")
    return failed


# ----------------------------------------------------------------------------------------------
# The page: formulas, figures, run.

FORMULAS = (
    Formula(
        "Cover's count (points in general position, hyperplane through the origin)",
        r"C(s,n) = 2\sum_{i=0}^{n-1}\binom{s-1}{i}",
        erratum="A-1.1-4",
    ),
    Formula("Recursion", r"C(s+1,n) = C(s,n) + C(s,n-1)"),
    Formula("Few points", r"C(s,n) = 2^s \quad\text{for } s \le n"),
    Formula(
        "Phase transition at s = 2n",
        r"\frac{C(s,n)}{2^s} \to \begin{cases} 1, & s/n < 2 \\ \tfrac{1}{2}, & s = 2n \\"
        r" 0, & s/n > 2 \end{cases} \quad (n \to \infty),\qquad C(2n,n) = 2^{2n-1}",
        erratum="E-1.1-5",
    ),
)


def figures(params: CoverParams) -> dict[str, go.Figure]:
    """Theory curves C(s,n)/2^s per n (drawn now), empty measured traces, the line s/n = 2.

    Traces 0..k-1 are the theory curves, k..2k-1 the measured fractions, for the k dimensions.
    """
    dims = dimensions(params.n_min, params.n_max)
    theory, measured = [], []
    for k, n in enumerate(dims):
        s = np.arange(1, math.floor(params.ratio_max * n) + 1)
        p = np.array([separable_probability(int(si), n) for si in s])
        color = COLORS[k % len(COLORS)]
        theory.append(
            go.Scatter(
                x=s / n, y=p, name=f"C(s,{n})/2^s", mode="lines", line=dict(color=color, width=1.5)
            )
        )
        measured.append(
            go.Scatter(
                x=[], y=[], name=f"LP, n = {n}", mode="markers", marker=dict(color=color, size=7),
                error_y=dict(type="data", array=[], visible=True, color=color),
            )
        )
    fig = go.Figure(
        theory + measured,
        layout=dict(
            title="Fraction of random dichotomies that a hyperplane through 0 separates",
            xaxis=dict(title="load s/n (points per dimension)", range=[0, params.ratio_max + 0.1]),
            yaxis=dict(title="P(separable)", range=[-0.05, 1.05]),
            shapes=[
                dict(type="line", x0=2, x1=2, y0=0, y1=1, yref="paper", line=dict(dash="dash"))
            ],
            annotations=[
                dict(x=2, y=1, yref="paper", text="s = 2n: exactly ½", showarrow=False,
                     xanchor="left", yanchor="top")
            ],
        ),
    )
    return {"separable": fig}


def run(params: CoverParams, ctx: RunContext) -> Iterator[Frame]:
    """Per (n, s): draw T Gaussian sets with random labels, count the separable ones by LP."""
    dims = dimensions(params.n_min, params.n_max)
    grid = [(k, n, s) for k, n in enumerate(dims) for s in point_counts(n, params.ratio_max)]
    T = params.trials
    results = []  # (n, s, fraction, p, z)
    for step, (k, n, s) in enumerate(grid, start=1):
        if ctx.should_stop():
            return
        x = ctx.rng.standard_normal((T, s, n))  # general position almost surely
        y = ctx.rng.choice(np.array([-1.0, 1.0]), size=(T, s))
        separable = int(are_separable(x, y).sum())
        fraction = separable / T
        p = separable_probability(s, n)
        z = z_score(separable, T, p)
        results.append((n, s, fraction, p, z))
        yield extend(
            "separable",
            [len(dims) + k],
            **{
                "x": [np.array([s / n])],
                "y": [np.array([fraction])],
                "error_y.array": [np.array([math.sqrt(fraction * (1 - fraction) / T)])],
            },
        )
        yield status((step, len(grid)), n=n, s=s, fraction=fraction, theory=p, z=_metric(z))
    if ctx.should_stop():
        return

    worst = max(results, key=lambda r: r[4])
    n_w, s_w, f_w, p_w, z_w = worst
    s_max = max(s for _, _, s in grid)
    violations = identity_violations(dims, s_max)
    at_2n = [r for r in results if r[1] == 2 * r[0]]
    n_big, _, f_2n, _, _ = at_2n[-1]
    half = [cover_count(2 * n, n) / 2 ** (2 * n) for n in dims]
    dims_text = ", ".join(map(str, dims))
    checks = [
        Check(
            name="Monte-Carlo fraction = C(s,n)/2^s",
            formula=r"\max_{n,s}\ z\big(\hat p\,T \sim \operatorname{Bin}(T, C(s,n)/2^s)\big)"
            r" \le 4",
            measured=z_w,
            reference=Z_MAX,
            relation="<=",
            passed=z_w <= Z_MAX,
            detail=f"worst of {len(results)} points at n = {n_w}, s = {s_w}: {f_w:.3f} separable "
            f"vs {p_w:.3f}, {T} sets each; z is the normal deviate of the exact two-sided "
            "binomial p-value under the theory (the 4 SE test with exact tails); for s <= n "
            "(p = 1) only T of T counts. Separability decided exactly by LP (y xᵀw >= 1).",
        ),
        Check(
            name="Counting identities (exact integers)",
            formula=r"C(s,n) = 2^s\ (s \le n),\ C(s+1,n) = C(s,n) + C(s,n-1),\ "
            r"C(2n,n) = 2^{2n-1}",
            measured=len(violations),
            reference=0,
            relation="=",
            passed=not violations,
            detail=(f"for n in {{{dims_text}}}, s <= {s_max}, with math.comb; "
                    + ("all hold" if not violations else "failing: " + "; ".join(violations[:5]))),
        ),
        Check(
            name="Exactly one half at s = 2n",
            formula=r"\frac{C(2n,n)}{2^{2n}} = \frac{1}{2}",
            measured=max(half, key=lambda h: abs(h - 0.5)),
            reference=0.5,
            relation="=",
            passed=all(h == 0.5 for h in half),
            detail=f"for n in {{{dims_text}}}; measured by LP at n = {n_big}, s = {2 * n_big}: "
            f"{f_2n:.3f}. The sheet's regimes are swapped (E-1.1-5): beyond s = 2n most "
            "dichotomies are not separable.",
        ),
    ]
    yield finish(checks, worst_z=_metric(z_w), point_sets=len(results) * T, fraction_at_2n=f_2n)


experiment = Experiment(
    slug="cover",
    title="Cover's theorem: the capacity of a hyperplane",
    section=Section("1.1", "Perceptron", chapter="1 History"),
    summary=(
        "How many of the 2^s labellings of s random points in ℝⁿ can a hyperplane through the "
        "origin separate? Each point set is tested exactly with a linear program, and the "
        "separable fraction is plotted against s/n beside Cover's C(s,n)/2^s. The curves for "
        "growing n sharpen into a step at s = 2n, where the probability is exactly ½: below "
        "it almost every labelling is separable, above it almost none."
    ),
    formulas=FORMULAS,
    Params=CoverParams,
    figures=figures,
    run=run,
)
