"""Hopfield networks (CHECKS.md 1.1.1-a, -b, -c) and the properties of the hopfield run.

References are independent of the engine: the energy as the double sum over i != j, the
Hebbian rule as explicit loops, the update rule and the one-step fields written out in numpy,
and the normal tail from scipy.stats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError
from scipy.stats import norm

from engine.core import Params, RunContext, checks_of, run_to_end
from engine.experiments.hopfield import (
    ALPHA_C,
    ENERGY_E,
    HopfieldParams,
    async_updates,
    capacity_point,
    corrupt,
    digit_patterns,
    energy,
    experiment,
    hebbian_weights,
    overlap,
    recall_async,
)
from tests.engine.frames import same_frames

SMALL = dict(side=8, trials=2, sweeps=3)  # a run of ~0.1 s for the property tests


def patterns(rng: np.random.Generator, s: int, n: int) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=(s, n))


def energy_reference(W: np.ndarray, X: np.ndarray, b: np.ndarray) -> float:
    """E(X) = -1/2 sum_{i != j} w_ij X_i X_j + sum_i b_i X_i, as the sheet writes it."""
    off_diagonal = W * ~np.eye(len(X), dtype=bool)
    return -0.5 * float(X @ off_diagonal @ X) + float(b @ X)


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.1.1-b: the Hebbian matrix, seed 1.


def test_hebbian_matrix_is_the_elementwise_rule():
    rng = np.random.default_rng(1)
    s, n = 7, 40
    x = patterns(rng, s, n)
    W = hebbian_weights(x)
    rule = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                rule[i, j] = sum(x[t, i] * x[t, j] for t in range(s)) / n
    np.testing.assert_allclose(W, rule, rtol=0, atol=1e-12)
    assert (np.diag(W) == 0).all()
    np.testing.assert_array_equal(W, W.T)
    # The sheet's W = (1/n) sum_t x^t x^tT has diagonal s/n instead.
    np.testing.assert_allclose(np.diag(x.T @ x / n), s / n, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.1.1-a: the energy is a Lyapunov function, seed 0.


def test_energy_never_increases_with_thresholds():
    rng = np.random.default_rng(0)
    n = 100
    W = hebbian_weights(patterns(rng, 10, n))
    b = 0.3 * rng.standard_normal(n)
    X = rng.choice([-1.0, 1.0], size=n)
    assert energy(W, X, b) == pytest.approx(energy_reference(W, X, b), abs=1e-12)
    worst, flips = -math.inf, 0
    for _ in range(10):
        for i in rng.permutation(n):
            field = W[i] @ X - b[i]
            expected = np.sign(field) if field != 0 else X[i]
            before = energy_reference(W, X, b)
            energies, flipped = async_updates(W, X, np.array([i]), b)
            after = energy_reference(W, X, b)
            assert X[i] == expected  # X_i <- sign(sum_j w_ij X_j - b_i)
            assert energies[0] == pytest.approx(after, abs=1e-12)
            worst = max(worst, after - before)
            flips += int(flipped[0])
    assert worst <= 1e-12
    assert flips > 0


def test_energy_with_the_wrong_sign_convention_can_increase():
    # Bias dynamics X_i <- sign(sum_j w_ij X_j + b_i) need E = ... - b^T X (ERRATA A-1.1.1-6):
    # paired with the threshold energy + b^T X, they climb it.
    rng = np.random.default_rng(0)
    n = 100
    W = hebbian_weights(patterns(rng, 10, n))
    b = rng.standard_normal(n)
    X = rng.choice([-1.0, 1.0], size=n)
    increases = 0
    for i in rng.permutation(n):
        before = energy_reference(W, X, b)
        field = W[i] @ X + b[i]
        X[i] = np.sign(field) if field != 0 else X[i]
        increases += energy_reference(W, X, b) - before > 1e-9
    assert increases > 0


def test_recall_async_energies_and_fixed_point():
    rng = np.random.default_rng(2)
    n = 64
    x = patterns(rng, 3, n)
    W = hebbian_weights(x)
    probe = corrupt(x[0], 0.1, rng)
    assert int((probe != x[0]).sum()) == round(0.1 * n)
    X, energies = recall_async(W, probe, rng, sweeps=10)
    assert energies[0] == pytest.approx(energy_reference(W, probe, np.zeros(n)), abs=1e-12)
    assert energies[-1] == pytest.approx(energy_reference(W, X, np.zeros(n)), abs=1e-12)
    assert np.diff(energies).max() <= 1e-12
    assert overlap(X, x[0]) == 1.0
    h = W @ X
    assert ((h * X) >= 0).all()  # a fixed point: no unit wants to flip


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.1.1-c: capacity, seed 0.


def phi_reference(alpha: float, s: int) -> float:
    return float(norm.cdf(-1.0 / math.sqrt(alpha * (s - 1) / s)))


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_one_step_flip_rate(alpha):
    n, repetitions = 500, 20
    s = round(alpha * n)
    rng = np.random.default_rng(0)
    flips = bits = 0
    for _ in range(repetitions):
        x = patterns(rng, s, n)
        W = x.T @ x / n
        np.fill_diagonal(W, 0.0)
        flips += int(((x @ W) * x < 0).sum())  # sign(h_i) != x_i at a stored pattern
        bits += s * n
    p = phi_reference(alpha, s)
    tolerance = 4 * 5 * math.sqrt(p * (1 - p) / bits) + 2e-4  # SE inflated x5, plus slack
    assert abs(flips / bits - p) <= tolerance

    # The engine's batched torch version, on its own random networks, meets the same bound.
    generator = torch.Generator().manual_seed(0)
    _, flips_t, bits_t = capacity_point(n, s, repetitions, 1, generator, torch.device("cpu"))
    tolerance_t = 4 * 5 * math.sqrt(p * (1 - p) / bits_t) + 2e-4
    assert bits_t == bits
    assert abs(flips_t / bits_t - p) <= tolerance_t


def test_retrieval_below_and_above_capacity():
    n = 500
    mean = {}
    for alpha in (0.05, 0.25):
        s = round(alpha * n)
        overlaps = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            x = patterns(rng, s, n)
            X, _ = recall_async(hebbian_weights(x), x[0], rng, sweeps=20)
            overlaps.append(float(X @ x[0]) / n)
        mean[alpha] = np.mean(overlaps)
    assert mean[0.05] > 0.99
    assert mean[0.25] < 0.9


def test_capacity_curve_in_torch_shows_the_transition():
    n = 500
    generator = torch.Generator().manual_seed(0)
    low, _, _ = capacity_point(n, round(0.05 * n), 5, 20, generator, torch.device("cpu"))
    high, _, _ = capacity_point(n, round(0.25 * n), 5, 20, generator, torch.device("cpu"))
    assert low.mean() > 0.99
    assert high.mean() < 0.9


# ----------------------------------------------------------------------------------------------
# The run.


def test_default_run_passes_all_checks():
    params = HopfieldParams()
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    assert len(checks) == 4
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert "Recall below capacity (exact)" in checks
    assert checks["Recall below capacity (exact)"].measured == 1.0
    assert len(frames) <= 300
    # The streamed energy never increases, and the state images are side x side.
    E = np.concatenate([f.update["y"][0] for f in frames
                        if f.figure == "energy" and f.indices[0] == ENERGY_E])
    assert len(E) > params.side**2 and np.diff(E).max() <= 1e-9
    images = [f.update["z"] for f in frames if f.figure == "state"]
    assert all(z.shape == (params.side, params.side) for zs in images for z in zs)
    # Each frame keeps the state it was sent with: the probe first, the stored pattern last.
    stored, probe = images[0]
    n = params.side**2
    assert float((stored * probe).sum()) / n == 1 - 2 * round(params.corruption * n) / n
    np.testing.assert_array_equal(images[-1][0], stored)
    progress = [f.progress for f in frames if f.progress is not None]
    assert all(0 < step <= total for step, total in progress)
    assert frames[-1].metrics["overlap_at_0_05"] > 0.99


def test_above_capacity_the_check_expects_degraded_recall():
    frames = run_to_end(experiment, HopfieldParams(alpha=0.25, side=12, trials=2))
    checks = checks_of(frames)
    recall = checks["Recall fails above capacity"]
    assert recall.relation == "<" and recall.reference > 0.9
    assert "capacity" in recall.detail
    assert recall.passed == (recall.measured < recall.reference)
    assert checks["Energy never increases"].passed


def test_digits_run():
    frames = run_to_end(experiment, HopfieldParams(source="digits", trials=2))
    checks = checks_of(frames)
    assert all(c.passed for c in checks.values()), [c.detail for c in checks.values()]
    first = next(f for f in frames if f.figure == "state")
    stored, state = first.update["z"]
    np.testing.assert_array_equal(stored.ravel(), digit_patterns()[0])
    assert stored.shape == state.shape == (8, 8)
    assert frames[-1].metrics["n"] == 64 and frames[-1].metrics["patterns"] == 3


def test_digit_patterns_are_the_binarised_digits_least_alike_first():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digit_patterns()
    assert x.shape == (10, 64) and set(np.unique(x)) == {-1.0, 1.0}
    binarised = {tuple(np.where(digits.images[k] >= 8, 1.0, -1.0).ravel()) for k in range(10)}
    assert {tuple(row) for row in x} == binarised
    similarity = np.abs(x @ x.T) / 64
    assert similarity[0, 1] == similarity[0, 1:].min()  # the second is the least like the first



def test_same_seed_same_frames():
    params = HopfieldParams(seed=5, alpha=0.2, **SMALL)
    first = run_to_end(experiment, params)
    assert same_frames(first, run_to_end(experiment, params))
    other = HopfieldParams(seed=6, alpha=0.2, **SMALL)
    assert not same_frames(first, run_to_end(experiment, other))


def test_cancellation_stops_without_checks():
    calls = 0

    def stop_after_five() -> bool:
        nonlocal calls
        calls += 1
        return calls > 5

    params = HopfieldParams(alpha=0.2, **SMALL)
    full = run_to_end(experiment, params)
    frames = list(experiment.run(params, RunContext(seed=0, should_stop=stop_after_five)))
    assert all(f.checks is None for f in frames)
    assert 0 < len(frames) < len(full)
    with pytest.raises(ValueError, match="without a final frame"):
        checks_of(frames)


@pytest.mark.parametrize(
    "field, value",
    [("alpha", 0.5), ("alpha", 0.0), ("side", 64), ("corruption", 0.6), ("sweeps", 0),
     ("trials", 100), ("source", "mnist")],
)
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        HopfieldParams(**{field: value})
    assert field in str(error.value)


def test_params_schema():
    assert issubclass(HopfieldParams, Params)
    with pytest.raises(ValidationError):
        HopfieldParams(n=256)  # unknown fields are errors
    schema = HopfieldParams.model_json_schema()["properties"]
    for name, prop in schema.items():
        assert "default" in prop and prop.get("description"), name
        if name == "source":
            assert set(prop["enum"]) == {"random", "digits"}
        elif name != "seed":
            assert "minimum" in prop and "maximum" in prop, name


def test_figures_and_formulas():
    figs = experiment.figures(HopfieldParams())
    assert set(figs) == {"state", "energy", "capacity"}
    for fig in figs.values():
        assert fig.layout.xaxis.title.text or fig.layout.title.text
    assert figs["energy"].layout.yaxis.title.text == "E(X)"
    assert figs["capacity"].layout.shapes[0].x0 == ALPHA_C
    assert len(figs["capacity"].data[2].x) > 0  # Φ curve drawn up front
    assert len(figs["capacity"].data[0].x) == 0 and len(figs["energy"].data[0].x) == 0
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert {f.erratum for f in experiment.formulas} >= {"A-1.1.1-6", "E-1.1.1-7"}
