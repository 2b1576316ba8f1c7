"""Positional encoding (CHECKS.md 1.6-e) against Vaswani's formula written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError

from engine.core import checks_of, run_to_end
from engine.experiments.positional_encoding import (
    PositionalParams,
    experiment,
    omega,
    omega_sheet,
)
from engine.experiments.transformer import sinusoidal_encoding


def vaswani(T: int, d: int, C: float = 10_000.0) -> np.ndarray:
    """PE(pos, 2i) = sin(pos / C^(2i/d)), PE(pos, 2i+1) = cos(pos / C^(2i/d))."""
    pos = np.arange(T)[:, None]
    i = np.arange(d // 2)[None, :]
    angle = pos / C ** (2 * i / d)
    pe = np.empty((T, d))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angle), np.cos(angle)
    return pe


@pytest.mark.parametrize("T, K, C", [(50, 16, 1e4), (128, 64, 1e4), (30, 8, 100.0)])
def test_table_is_vaswanis(T, K, C):
    p = sinusoidal_encoding(T, K, C, dtype=torch.float64).numpy()
    np.testing.assert_allclose(p, vaswani(T, K, C), rtol=0, atol=1e-10)
    assert np.abs(p).max() <= 1.0


def test_shifts_are_rotations():
    T, K = 64, 16
    p = sinusoidal_encoding(T, K, dtype=torch.float64).numpy()
    w = 10_000.0 ** (-np.arange(0, K, 2) / K)  # one frequency per (sin, cos) pair
    for delta in (1, 5, 17):
        R = np.zeros((K, K))
        for i, wi in enumerate(w):
            c, s = math.cos(wi * delta), math.sin(wi * delta)
            R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = [[c, s], [-s, c]]
        np.testing.assert_allclose(p[delta:], p[:-delta] @ R.T, rtol=0, atol=1e-10)


def test_frequencies_stay_below_nyquist_unlike_the_sheet():
    w = omega(8, 1e4)
    assert w.max() == 1.0 and (w <= 1.0).all() and w.max() < math.pi
    np.testing.assert_array_equal(w[0::2], w[1::2])  # a pair shares its frequency
    assert omega_sheet(8, 1e4).max() == pytest.approx(10_000 ** (7 / 8))  # ≈ 3.2e3 rad/step


def test_default_run_passes_all_checks():
    params = PositionalParams()
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    assert len(checks) == 5
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert len(frames) <= 300
    figs = experiment.figures(params)
    for frame in frames:
        if frame.op is not None:
            assert frame.figure in figs
            assert all(i < len(figs[frame.figure].data) for i in frame.indices)
    # The charts get float32 (half the bytes); the checks above ran in float64.
    table = [f for f in frames if f.figure == "encoding"][-1].update["z"][0]
    reference = vaswani(params.T, params.K)
    assert table.dtype == np.float32 and table.shape == (params.T, params.K)
    np.testing.assert_allclose(table, reference, atol=1e-6)
    S = next(f for f in frames if f.figure == "similarity").update["z"][0]
    np.testing.assert_allclose(S, reference @ reference.T, atol=1e-5)
    assert frames[-1].metrics["sheet_omega_max"] > 1e3


@pytest.mark.parametrize("field, value", [("K", 63), ("K", 2), ("T", 1000), ("C", 1.0)])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        PositionalParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_formulas_render():
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert experiment.formulas[0].erratum == "E-1.6-1"
