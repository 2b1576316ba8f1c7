"""GELU (CHECKS.md 1.6-h) against scipy's normal distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from latex2mathml.converter import convert
from pydantic import ValidationError
from scipy.stats import norm

from engine.core import checks_of, run_to_end
from engine.experiments.gelu import GeluParams, experiment, gelu_tanh

Z = torch.linspace(-6, 6, 2001, dtype=torch.float64)
z = Z.numpy()


def test_gelu_is_z_times_the_normal_cdf():
    np.testing.assert_allclose(F.gelu(Z).numpy(), z * norm.cdf(z), rtol=0, atol=1e-12)
    # The sheet's z·Pr(z ≤ Z) = z·Φ(−z) is off by up to 6 on [−6, 6] (E-1.6-3).
    assert np.abs(z * norm.cdf(-z) - F.gelu(Z).numpy()).max() == pytest.approx(6, abs=1e-6)


def test_tanh_approximation():
    error = np.abs(F.gelu(Z, approximate="tanh").numpy() - z * norm.cdf(z)).max()
    assert 1e-4 < error < 1e-3
    np.testing.assert_allclose(gelu_tanh(Z).numpy(), F.gelu(Z, approximate="tanh").numpy(),
                               rtol=0, atol=1e-12)


def test_derivative_and_minimum():
    x = Z.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(F.gelu(x).sum(), x)
    np.testing.assert_allclose(slope.numpy(), norm.cdf(z) + z * norm.pdf(z), atol=1e-12)
    assert (z * norm.cdf(z)).min() == pytest.approx(-0.16997, abs=1e-4)  # at z ≈ −0.752


def test_default_run_passes_all_checks():
    params = GeluParams()
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    assert len(checks) == 4
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    figs = experiment.figures(params)
    for frame in frames:
        if frame.op is not None:
            assert frame.op == "extend" and frame.figure in figs
            assert all(len(figs[frame.figure].data[i].x) == 0 for i in frame.indices)
    x = np.concatenate([f.update["x"][0] for f in frames if f.figure == "activations"])
    y = np.concatenate([f.update["y"][0] for f in frames if f.figure == "activations"])
    assert len(x) == params.points and np.all(np.diff(x) > 0)
    np.testing.assert_allclose(y, x * norm.cdf(x), atol=1e-12)


@pytest.mark.parametrize("field, value", [("z_max", 0.5), ("z_max", 11), ("points", 10)])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        GeluParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_formulas_render():
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert experiment.formulas[0].erratum == "E-1.6-3"
