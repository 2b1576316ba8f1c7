r"""1.6 Positional encoding: the sinusoidal table :math:`p_{tk}` and what its geometry gives.

The cheat sheet, corrected per ERRATA.md E-1.6-1 (the sheet prints :math:`\omega_k =
C^{k/K}`, whose frequencies reach :math:`\approx C` rad per step, far past the Nyquist limit
:math:`\pi`, so the code aliases; and a sin/cos pair must share one frequency):

.. math:: p_{tk} = \begin{cases}\sin(\omega_k t), & k \text{ even}\\
          \cos(\omega_k t), & k \text{ odd}\end{cases}\qquad
          \omega_k = C^{-2\lfloor k/2\rfloor/K},

Vaswani et al.'s :math:`PE(t, 2i) = \sin(t/C^{2i/K})`, :math:`PE(t, 2i+1) = \cos(t/C^{2i/K})`
with :math:`C = 10^4`, :math:`K = d_{\text{model}}`. Each pair (2i, 2i+1) is a point on the unit
circle turning at :math:`\omega_{2i}` rad per step, so a shift by Δ is a rotation,
:math:`p_{t+\Delta} = R(\Delta)\,p_t`, and the similarity
:math:`p_t \cdot p_{t'} = \sum_i \cos(\omega_{2i}(t - t'))` depends on the offset only.

Reference: Vaswani et al., *Attention is all you need* (2017), §3.5.

The table comes from :func:`engine.experiments.transformer.sinusoidal_encoding`, the one the
attention experiment's model adds to its embeddings; the run streams it position by position
and checks it against Vaswani's formula written out in numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import plotly.graph_objects as go
import torch
from pydantic import Field

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
    restyle,
    status,
)
from engine.experiments.transformer import sinusoidal_encoding

TOL = 1e-10  # CHECKS.md 1.6-e
CHUNKS = 10  # frames that fill in the table


class PositionalParams(Params):
    """The base C, the dimension K and how many positions to show."""

    C: float = Field(
        10_000.0, ge=10.0, le=100_000.0,
        description="Base C: the slowest pair turns at C^{-(K-2)/K} rad per step (Vaswani: 10⁴).",
    )
    K: int = Field(
        64, ge=4, le=128, multiple_of=2,
        description="Dimension K of the encoding (d_model), even: K/2 sin/cos pairs.",
    )
    T: int = Field(100, ge=8, le=200, description="Positions t = 0 … T−1.")


def omega(K: int, C: float) -> np.ndarray:
    r""":math:`\omega_k = C^{-2\lfloor k/2\rfloor/K}` for k = 0 … K−1 (float64)."""
    k = np.arange(K)
    return C ** (-2.0 * (k // 2) / K)


def omega_sheet(K: int, C: float) -> np.ndarray:
    r"""The sheet's printed :math:`\omega_k = C^{k/K}` (E-1.6-1), for comparison."""
    return C ** (np.arange(K) / K)


def vaswani_table(T: int, K: int, C: float) -> np.ndarray:
    """PE(t, 2i) = sin(t / C^{2i/K}), PE(t, 2i+1) = cos(t / C^{2i/K}), written as in the paper."""
    pe = np.zeros((T, K))
    for t in range(T):
        for i in range(K // 2):
            pe[t, 2 * i] = math.sin(t / C ** (2 * i / K))
            pe[t, 2 * i + 1] = math.cos(t / C ** (2 * i / K))
    return pe


def rotation(delta: int, K: int, C: float) -> np.ndarray:
    r""":math:`R(\Delta)`, block-diagonal: each (sin, cos) pair turned by :math:`\omega\Delta`."""
    R = np.zeros((K, K))
    for i in range(K // 2):
        a = omega(K, C)[2 * i] * delta
        # sin(ω(t+Δ)) = sin ωt cos ωΔ + cos ωt sin ωΔ; cos(ω(t+Δ)) = cos ωt cos ωΔ − sin ωt sin ωΔ
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = [[math.cos(a), math.sin(a)],
                                                 [-math.sin(a), math.cos(a)]]
    return R


FORMULAS = (
    Formula(
        "Positional encoding",
        r"p_{tk} = \begin{cases}\sin(\omega_k t), & k \text{ even}\\ \cos(\omega_k t), & "
        r"k \text{ odd}\end{cases},\quad \omega_k = C^{-2\lfloor k/2 \rfloor/K}",
        erratum="E-1.6-1",
    ),
    Formula("Shift = rotation", r"p_{t+\Delta} = R(\Delta)\, p_t"),
    Formula(
        "Similarity depends on the offset",
        r"p_t \cdot p_{t'} = \sum_{i=0}^{K/2-1} \cos\big(\omega_{2i}(t - t')\big)",
    ),
)

def figures(params: PositionalParams) -> dict[str, go.Figure]:
    """The table p_tk, the similarity p_t·p_t', the frequencies, and similarity by offset."""
    T, K = params.T, params.K
    encoding = go.Figure(
        go.Heatmap(z=[], colorscale="RdBu", zmin=-1, zmax=1, colorbar=dict(title="p_tk")),
        layout=dict(title=f"p_tk: position t (rows) × dimension k (columns), C = {params.C:g}",
                    xaxis=dict(title="dimension k"),
                    yaxis=dict(title="position t", autorange="reversed")),
    )
    similarity = go.Figure(
        go.Heatmap(z=[], colorscale="Viridis", colorbar=dict(title="p_t·p_t'")),
        layout=dict(title="Similarity p_t · p_t' (constant along diagonals: offset only)",
                    xaxis=dict(title="position t'"),
                    yaxis=dict(title="position t", autorange="reversed", scaleanchor="x")),
    )
    k = np.arange(K, dtype=np.float64)
    frequencies = go.Figure(
        [
            go.Scatter(x=k, y=omega(K, params.C), name="ω_k = C^(−2⌊k/2⌋/K)",
                       mode="markers+lines"),
            go.Scatter(x=k, y=omega_sheet(K, params.C), name="sheet: ω_k = C^(k/K)",
                       mode="markers+lines", line=dict(dash="dot", color="#d62728")),
            go.Scatter(x=[0.0, K - 1.0], y=[math.pi, math.pi], name="Nyquist π rad/step",
                       mode="lines", line=dict(dash="dash", color="#555555")),
        ],
        layout=dict(title="Frequencies: the sheet's exponent aliases above π",
                    xaxis=dict(title="dimension k"),
                    yaxis=dict(title="ω_k (rad per step)", type="log")),
    )
    offset = go.Figure(
        [
            go.Scatter(x=[], y=[], name="p_0 · p_Δ", mode="lines"),
            go.Scatter(x=[], y=[], name=f"p_{T // 2} · p_{T // 2}+Δ", mode="markers",
                       marker=dict(size=5)),
            go.Scatter(x=[], y=[], name="Σ_i cos(ω_2i Δ)", mode="lines",
                       line=dict(dash="dot", color="#555555")),
        ],
        layout=dict(title="Similarity against the offset Δ: the same from any t",
                    xaxis=dict(title="offset Δ"), yaxis=dict(title="similarity")),
    )
    return {"encoding": encoding, "similarity": similarity, "frequencies": frequencies,
            "offset": offset}


def run(params: PositionalParams, ctx: RunContext) -> Iterator[Frame]:
    """Fill in the table position by position, then its similarity, then check."""
    T, K, C = params.T, params.K, params.C
    p = sinusoidal_encoding(T, K, C, dtype=torch.float64).numpy()  # (T, K)
    bounds = np.linspace(0, T, CHUNKS + 1).astype(int)
    for i, stop in enumerate(bounds[1:], start=1):
        if ctx.should_stop():
            return
        yield restyle("encoding", [0], z=[p[:stop].astype(np.float32)])
        yield status((i, CHUNKS + 1), positions=int(stop))
    S = p @ p.T  # (T, T)
    yield restyle("similarity", [0], z=[S.astype(np.float32)])
    half = T // 2
    delta = np.arange(T - half, dtype=np.float64)
    w = omega(K, C)[0::2]
    closed = np.cos(np.outer(delta, w)).sum(axis=1)  # Σ_i cos(ω_2i Δ)
    yield extend("offset", [0, 1, 2], x=[delta, delta, delta],
                 y=[S[0, : len(delta)], S[half, half:], closed])

    # Checks (CHECKS.md 1.6-e), numpy float64.
    table_error = float(np.abs(p - vaswani_table(T, K, C)).max())
    shifts = range(1, min(T, 17))
    rotation_error = max(float(np.abs(p[d:] - p[:-d] @ rotation(d, K, C).T).max())
                         for d in shifts)
    toeplitz_error = float(np.abs(S[1:, 1:] - S[:-1, :-1]).max())
    offsets = np.subtract.outer(np.arange(T), np.arange(T))
    closed_error = float(np.abs(S - np.cos(offsets[..., None] * w).sum(-1)).max())
    norm_error = float(np.abs((p**2).sum(axis=1) - K / 2).max())
    w_max, sheet_max = float(omega(K, C).max()), float(omega_sheet(K, C).max())
    yield status((CHUNKS + 1, CHUNKS + 1), positions=T)
    checks = [
        Check(
            name="p_tk = Vaswani's sin/cos table",
            formula=r"\max_{t,k}\big|p_{tk} - PE(t, k)\big| \le 10^{-10}",
            measured=table_error, reference=TOL, relation="<=",
            detail=f"the engine's table (the one the transformer adds) against "
            f"PE(t, 2i) = sin(t/C^(2i/K)), PE(t, 2i+1) = cos(t/C^(2i/K)) in plain Python, "
            f"T = {T}, K = {K}, C = {C:g}.",
        ),
        Check(
            name="A shift is a rotation: p_{t+Δ} = R(Δ) p_t",
            formula=r"\max_{t,\Delta}\big\|p_{t+\Delta} - R(\Delta)p_t\big\|_\infty \le 10^{-10}",
            measured=rotation_error, reference=TOL, relation="<=",
            detail=f"R(Δ) block-diagonal, each (sin, cos) pair rotated by ω_2i Δ; every t and "
            f"Δ = 1 … {max(shifts)}.",
        ),
        Check(
            name="Similarity depends only on the offset",
            formula=r"p_t\cdot p_{t'} = \sum_i \cos\big(\omega_{2i}(t-t')\big)",
            measured=max(toeplitz_error, closed_error), reference=TOL, relation="<=",
            passed=max(toeplitz_error, closed_error) <= TOL,
            detail=f"constant along diagonals to {toeplitz_error:.2g}, closed form to "
            f"{closed_error:.2g}, over all {T}×{T} pairs.",
        ),
        Check(
            name="Bounded, constant norm: |p_tk| ≤ 1, ‖p_t‖² = K/2",
            formula=r"\max_t\big|\|p_t\|^2 - K/2\big| \le 10^{-10}",
            measured=norm_error, reference=TOL, relation="<=",
            passed=norm_error <= TOL and float(np.abs(p).max()) <= 1.0,
            detail=f"largest |p_tk| = {float(np.abs(p).max()):.6f}; sin² + cos² = 1 per pair, "
            f"K/2 = {K // 2} pairs.",
        ),
        Check(
            name="No aliasing: ω_k ≤ 1 < π",
            formula=r"\max_k \omega_k = 1 < \pi",
            measured=w_max, reference=math.pi, relation="<",
            detail=f"the fastest pair turns 1 rad per step, below the Nyquist limit π; the "
            f"sheet's ω_k = C^(k/K) would reach {sheet_max:.3g} rad per step, so its "
            "high dimensions alias (E-1.6-1).",
        ),
    ]
    yield finish(checks, omega_max=w_max, omega_min=float(omega(K, C).min()),
                 sheet_omega_max=sheet_max, wavelength_max=2 * math.pi / float(w.min()))


experiment = Experiment(
    slug="positional-encoding",
    title="Positional encoding: the sinusoidal table and its rotations",
    section=Section("1.6", "Attention and transformers", chapter="1 History"),
    summary=(
        "The sinusoidal positional encoding p_tk = sin/cos(ω_k t), ω_k = C^(−2⌊k/2⌋/K), as a "
        "heat-map over positions and dimensions, with the dot-product similarity of positions: "
        "it depends only on their offset, because a shift is a rotation of every sin/cos pair. "
        "The sheet's ω_k = C^(k/K) is drawn beside it: its frequencies pass π and alias."
    ),
    formulas=FORMULAS,
    Params=PositionalParams,
    figures=figures,
    run=run,
)
