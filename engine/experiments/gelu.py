r"""1.6 GELU: the activation of transformers, :math:`\varphi(z) = z\,\Phi(z)`.

The cheat sheet, corrected per ERRATA.md E-1.6-3 (it prints :math:`z\Pr(z \le Z)`, which is
:math:`z\,\Phi(-z)`, a different, non-monotone function that tends to 0 at both ends):

.. math:: \mathrm{GELU}(z) = z\,\Pr(Z \le z) = z\,\Phi(z),\qquad Z \sim \mathcal N(0, 1),

the input weighted by how likely a standard normal lies below it; the tanh approximation
:math:`\tfrac12 z\big(1 + \tanh(\sqrt{2/\pi}\,(z + 0.044715 z^3))\big)` is within
:math:`5\cdot10^{-4}` of it, and its derivative is :math:`\Phi(z) + z\,\varphi(z)`
(:math:`\varphi` the normal density here), which dips below 0 for :math:`z < -0.75`, so GELU,
unlike ReLU, is not monotone.

Reference: Hendrycks & Gimpel, *Gaussian error linear units (GELUs)* (2016).

The run sweeps z from :math:`-z_{\max}` to :math:`z_{\max}` in float64, drawing GELU, its tanh
approximation, ReLU and the sheet's version, and the derivative by autograd; scipy's normal
CDF is the independent reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.stats import norm

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

EXACT_TOL = 1e-12  # CHECKS.md 1.6-h
TANH_TOL = 1e-3  # the bound on the tanh approximation (its true max error is ~5e-4)
CHUNKS = 12


class GeluParams(Params):
    """The interval of z and how finely it is sampled."""

    z_max: float = Field(6.0, ge=1.0, le=10.0, description="Plot and check z ∈ [−z_max, z_max].")
    points: int = Field(1201, ge=101, le=4001, description="Grid points on the interval.")


def gelu_tanh(z: torch.Tensor) -> torch.Tensor:
    r""":math:`\tfrac12 z\big(1 + \tanh(\sqrt{2/\pi}\,(z + 0.044715 z^3))\big)`."""
    return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))


FORMULAS = (
    Formula(
        "GELU",
        r"\varphi(z) = z\,\Pr(Z \le z) = z\,\Phi(z),\quad Z \sim \mathcal{N}(0, 1)",
        erratum="E-1.6-3",
    ),
    Formula(
        "tanh approximation",
        r"\varphi(z) \approx \tfrac{1}{2} z\Big(1 + \tanh\big(\sqrt{2/\pi}\,"
        r"(z + 0.044715 z^3)\big)\Big)",
    ),
    Formula("Derivative", r"\varphi'(z) = \Phi(z) + z\,\phi(z)"),
)

GELU, TANH, RELU, SHEET = range(4)
ERROR_TANH = 0
DERIVATIVE, RELU_STEP = range(2)


def figures(params: GeluParams) -> dict[str, go.Figure]:
    """GELU against ReLU, the tanh approximation's error, and the derivatives."""

    def line(name, color, dash="solid", width=2):
        return go.Scatter(x=[], y=[], name=name, mode="lines",
                          line=dict(color=color, dash=dash, width=width))

    activations = go.Figure(
        [line("GELU z·Φ(z)", "#1f77b4", width=3), line("tanh approximation", "#ff7f0e", "dash"),
         line("ReLU max(0, z)", "#2ca02c", "dot"),
         line("sheet: z·Pr(z ≤ Z) = z·Φ(−z)", "#d62728", "dashdot")],
        layout=dict(title="GELU φ(z) = z·Φ(z) against ReLU and its tanh approximation",
                    xaxis=dict(title="z"), yaxis=dict(title="φ(z)")),
    )
    error = go.Figure(
        [line("tanh approximation − z·Φ(z)", "#ff7f0e")],
        layout=dict(title="Error of the tanh approximation (bound: 10⁻³)",
                    xaxis=dict(title="z"), yaxis=dict(title="error", exponentformat="e")),
    )
    derivative = go.Figure(
        [line("φ'(z) by autograd", "#1f77b4", width=3), line("ReLU'(z)", "#2ca02c", "dot")],
        layout=dict(title="Derivative Φ(z) + z·ϕ(z): negative below z ≈ −0.75 (not monotone)",
                    xaxis=dict(title="z"), yaxis=dict(title="φ'(z)")),
    )
    return {"activations": activations, "error": error, "derivative": derivative}


def run(params: GeluParams, ctx: RunContext) -> Iterator[Frame]:
    """Sweep z in chunks (float64), then check against scipy's Φ."""
    z_all = torch.linspace(-params.z_max, params.z_max, params.points, dtype=torch.float64)
    for i, z in enumerate(torch.tensor_split(z_all, CHUNKS), start=1):
        if ctx.should_stop():
            return
        z = z.clone().requires_grad_(True)
        phi = F.gelu(z)
        (slope,) = torch.autograd.grad(phi.sum(), z)
        z_np = z.detach().numpy()
        yield extend("activations", [GELU, TANH, RELU, SHEET], x=[z_np] * 4,
                     y=[phi.detach().numpy(), F.gelu(z.detach(), approximate="tanh").numpy(),
                        np.maximum(z_np, 0.0), z_np * norm.cdf(-z_np)])
        yield extend("error", [ERROR_TANH], x=[z_np],
                     y=[gelu_tanh(z.detach()).numpy() - z_np * norm.cdf(z_np)])
        yield extend("derivative", [DERIVATIVE, RELU_STEP], x=[z_np] * 2,
                     y=[slope.numpy(), (z_np > 0).astype(np.float64)])
        yield status((i, CHUNKS), z=float(z_np[-1]))

    # Checks (CHECKS.md 1.6-h), float64, scipy as the reference.
    z = z_all.numpy()
    Phi = norm.cdf(z)
    exact_error = float(np.abs(F.gelu(z_all).numpy() - z * Phi).max())
    tanh_error = float(np.abs(F.gelu(z_all, approximate="tanh").numpy() - z * Phi).max())
    formula_error = float(np.abs((gelu_tanh(z_all) - F.gelu(z_all, approximate="tanh")).numpy())
                          .max())
    zg = z_all.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(F.gelu(zg).sum(), zg)
    slope_error = float(np.abs(slope.numpy() - (Phi + z * norm.pdf(z))).max())
    sheet_gap = float(np.abs(z * norm.cdf(-z) - z * Phi).max())
    # |z Φ(−z) − z Φ(z)| = |z| (2Φ(|z|) − 1) grows with |z|: largest at the ends.
    sheet_closed = params.z_max * (2 * norm.cdf(params.z_max) - 1)
    z_min = z[int(np.argmin(z * Phi))]
    checks = [
        Check(
            name="F.gelu = z·Φ(z)",
            formula=r"\max_z \big|\mathrm{gelu}(z) - z\,\Phi(z)\big| \le 10^{-12}",
            measured=exact_error, reference=EXACT_TOL, relation="<=",
            detail=f"torch's exact (erf) GELU against z·scipy.stats.norm.cdf(z), float64, "
            f"{params.points} points on [−{params.z_max:g}, {params.z_max:g}].",
        ),
        Check(
            name="tanh approximation within 10⁻³",
            formula=r"\max_z \Big|\tfrac12 z\big(1+\tanh(\sqrt{2/\pi}(z+0.044715z^3))\big)"
            r" - z\,\Phi(z)\Big| \le 10^{-3}",
            measured=tanh_error, reference=TANH_TOL, relation="<=",
            passed=tanh_error <= TANH_TOL and formula_error <= EXACT_TOL,
            detail=f"F.gelu(approximate='tanh') against z·Φ(z); the formula as written equals "
            f"torch's to {formula_error:.2g}.",
        ),
        Check(
            name="Derivative φ'(z) = Φ(z) + z·ϕ(z)",
            formula=r"\max_z \big|\tfrac{d}{dz}\mathrm{gelu}(z) - \Phi(z) - z\,\phi(z)\big|"
            r" \le 10^{-12}",
            measured=slope_error, reference=EXACT_TOL, relation="<=",
            detail=f"autograd against scipy's Φ and density ϕ; GELU is smallest on the grid at "
            f"z = {z_min:.3f}, where φ' changes sign.",
        ),
        Check(
            name="Sheet's z·Pr(z ≤ Z) is another function",
            formula=r"\max_{|z| \le z_{\max}} \big|z\,\Phi(-z) - z\,\Phi(z)\big| = "
            r"z_{\max}\big(2\Phi(z_{\max}) - 1\big)",
            measured=sheet_gap, reference=sheet_closed, relation="≈",
            passed=abs(sheet_gap - sheet_closed) <= EXACT_TOL,
            detail="Pr(z ≤ Z) = Φ(−z): the sheet's formula (E-1.6-3) is off by up to "
            f"{sheet_gap:.3g} at z = ±{params.z_max:g}, and falls to 0 for large z instead of "
            "growing like ReLU.",
        ),
    ]
    yield finish(checks, tanh_max_error=tanh_error, gelu_min=float((z * Phi).min()),
                 argmin=float(z_min))


experiment = Experiment(
    slug="gelu",
    title="GELU: z·Φ(z) against ReLU and its tanh approximation",
    section=Section("1.6", "Attention and transformers", chapter="1 History"),
    summary=(
        "The Gaussian error linear unit φ(z) = z·Φ(z), the activation in the transformer's "
        "feed-forward layers, drawn against ReLU, its tanh approximation (error below 5·10⁻⁴) "
        "and the sheet's misprint z·Pr(z ≤ Z) = z·Φ(−z); with its derivative, which dips below "
        "zero, so GELU is not monotone."
    ),
    formulas=FORMULAS,
    Params=GeluParams,
    figures=figures,
    run=run,
)
