"""Cover's function counting theorem (CHECKS.md 1.1-f) and the properties of the cover run.

References are independent of the engine: closed forms for small n, brute-force enumeration of
every dichotomy, plain scipy LPs, and binomial tails from scipy.stats.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from latex2mathml.converter import convert
from pydantic import ValidationError
from scipy.optimize import linprog
from scipy.stats import binom

from engine.core import Params, RunContext, checks_of, run_to_end
from engine.experiments.cover import (
    CoverParams,
    are_separable,
    cover_count,
    dimensions,
    experiment,
    is_separable,
    point_counts,
    separable_probability,
    z_score,
)
from tests.engine.frames import same_frames

SMALL = dict(n_min=2, n_max=4, trials=20)  # a run of ~0.1 s for the property tests


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.1-f, exact part.


def test_cover_count_identities():
    for n in range(1, 13):
        for s in range(1, n + 1):
            assert cover_count(s, n) == 2**s
        for s in range(1, 60):
            assert cover_count(s + 1, n) == cover_count(s, n) + cover_count(s, n - 1)
        assert cover_count(2 * n, n) == 2 ** (2 * n - 1)
        assert separable_probability(2 * n, n) == 0.5


def test_cover_count_closed_forms():
    # Homogeneous lines in the plane realise 2s dichotomies; planes in R^3, s^2 - s + 2.
    for s in range(1, 40):
        assert cover_count(s, 1) == 2
        assert cover_count(s, 2) == 2 * s
        assert cover_count(s, 3) == s * s - s + 2


def test_cover_count_rejects_nonsense():
    with pytest.raises(ValueError, match="s >= 1"):
        cover_count(0, 3)


def _feasible(x: np.ndarray, y: np.ndarray) -> bool:
    """The reference LP, written out here: is {w : y_i x_i^T w >= 1} non-empty?"""
    res = linprog(np.zeros(x.shape[1]), A_ub=-(y[:, None] * x), b_ub=-np.ones(len(y)),
                  bounds=(None, None), method="highs")
    assert res.status in (0, 2), res.message
    return res.status == 0


@pytest.mark.parametrize("s, n", [(4, 2), (6, 2), (5, 3), (7, 3)])
def test_cover_count_by_enumerating_every_dichotomy(s, n):
    x = np.random.default_rng(s * 10 + n).standard_normal((s, n))  # general position a.s.
    count = sum(_feasible(x, np.array(y)) for y in itertools.product((-1.0, 1.0), repeat=s))
    assert count == cover_count(s, n)


# ----------------------------------------------------------------------------------------------
# Separability tests.


def test_is_separable_small_cases():
    # Two opposite points with the same label: no homogeneous hyperplane separates them.
    x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert not is_separable(x, np.array([1.0, 1.0]))
    assert is_separable(x, np.array([1.0, -1.0]))
    # s <= n points in general position: every labelling is separable.
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.standard_normal((4, 5))
        assert is_separable(x, rng.choice([-1.0, 1.0], size=4))


@pytest.mark.parametrize("n, s", [(1, 3), (2, 5), (3, 6), (5, 10), (8, 20), (16, 40)])
def test_batched_lp_agrees_with_plain_lp(n, s):
    rng = np.random.default_rng(n + s)
    x = rng.standard_normal((60, s, n))
    y = rng.choice([-1.0, 1.0], size=(60, s))
    reference = np.array([_feasible(x[k], y[k]) for k in range(60)])
    np.testing.assert_array_equal(are_separable(x, y), reference)


# ----------------------------------------------------------------------------------------------
# CHECKS.md 1.1-f, statistical part: n = 5, 300 Gaussian sets per s, seed 0.


def test_monte_carlo_fraction_matches_cover():
    n, trials = 5, 300
    rng = np.random.default_rng(0)
    fractions = {}
    for s in (5, 8, 10, 12, 15, 20):
        hits = 0
        for _ in range(trials):
            x = rng.standard_normal((s, n))
            y = rng.choice([-1.0, 1.0], size=s)
            hits += is_separable(x, y)
        p = 2 * sum(math.comb(s - 1, i) for i in range(n)) / 2**s  # the formula, written out
        se = math.sqrt(p * (1 - p) / trials)
        fractions[s] = hits / trials
        assert abs(fractions[s] - p) <= 4 * se, (s, fractions[s], p)
    # The sheet says that beyond s = 2n an empty version space is the exception: it is the rule.
    assert fractions[15] < 0.5 and fractions[20] < 0.5
    assert fractions[5] == 1.0


def test_z_score_is_the_binomial_tail():
    # z <= 4 exactly when the two-sided binomial tail is at least 2 * Phi(-4).
    T, p = 200, 0.05
    pmf = binom.pmf(np.arange(T + 1), T, p)
    for k in (0, 3, 10, 20, 25, 40):
        tail = pmf[pmf <= pmf[k] * (1 + 1e-7)].sum()
        assert (z_score(k, T, p) <= 4) == (tail >= 6.334e-5)
    assert z_score(100, 200, 0.5) == 0.0
    assert z_score(20, 20, 1.0) == 0.0
    assert z_score(19, 20, 1.0) == math.inf


def test_grid_contains_the_transition():
    assert dimensions(2, 16) == [2, 4, 8, 16]
    assert dimensions(3, 20) == [3, 6, 12]
    for n in (1, 2, 5, 16):
        counts = point_counts(n, 4.0)
        assert 2 * n in counts and max(counts) == 4 * n and min(counts) >= 1


# ----------------------------------------------------------------------------------------------
# The run.


def test_default_run_passes_all_checks():
    params = CoverParams()
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    assert len(checks) == 3
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert len(frames) <= 300
    final = frames[-1]
    assert final.metrics["worst_z"] <= 4
    assert final.metrics["fraction_at_2n"] == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / 200))
    # Every grid point extends the measured trace of its n with a point and an error bar.
    points = [f for f in frames if f.op == "extend"]
    dims = dimensions(params.n_min, params.n_max)
    assert len(points) == sum(len(point_counts(n, params.ratio_max)) for n in dims)
    assert all(len(f.update["error_y.array"][0]) == 1 for f in points)
    progress = [f.progress for f in frames if f.progress is not None]
    assert progress[-1] == (len(points), len(points))



def test_same_seed_same_frames():
    params = CoverParams(seed=7, **SMALL)
    first = run_to_end(experiment, params)
    assert same_frames(first, run_to_end(experiment, params))
    assert not same_frames(first, run_to_end(experiment, CoverParams(seed=8, **SMALL)))


def test_cancellation_stops_without_checks():
    calls = 0

    def stop_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    params = CoverParams(**SMALL)
    frames = list(experiment.run(params, RunContext(seed=0, should_stop=stop_after_three)))
    assert all(f.checks is None for f in frames)
    assert len([f for f in frames if f.op == "extend"]) == 3
    with pytest.raises(ValueError, match="without a final frame"):
        checks_of(frames)


@pytest.mark.parametrize(
    "field, value",
    [("trials", 10), ("trials", 10_000), ("n_max", 64), ("n_min", 0), ("ratio_max", 8.0),
     ("seed", -1)],
)
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        CoverParams(**{field: value})
    assert field in str(error.value)


def test_params_consistency_and_schema():
    with pytest.raises(ValidationError, match="n_min must be <= n_max"):
        CoverParams(n_min=8, n_max=4)
    with pytest.raises(ValidationError):
        CoverParams(dims=3)  # unknown fields are errors
    assert issubclass(CoverParams, Params)
    schema = CoverParams.model_json_schema()["properties"]
    for name, prop in schema.items():
        assert "default" in prop and prop.get("description"), name
        if name != "seed":
            assert "minimum" in prop and "maximum" in prop, name


def test_figures_and_formulas():
    params = CoverParams()
    fig = experiment.figures(params)["separable"]
    k = len(dimensions(params.n_min, params.n_max))
    assert len(fig.data) == 2 * k
    assert all(len(trace.x) > 0 for trace in fig.data[:k])  # theory drawn up front
    assert all(len(trace.x) == 0 for trace in fig.data[k:])  # measurements streamed
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert fig.layout.shapes[0].x0 == 2
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert {f.erratum for f in experiment.formulas} >= {"A-1.1-4", "E-1.1-5"}
