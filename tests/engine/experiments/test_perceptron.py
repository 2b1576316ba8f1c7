"""1.1 Perceptron: CHECKS.md 1.1-a to 1.1-e, and the run's protocol properties.

Every numerical check compares against an independent reference: torch.nn.Linear, a plain
numpy perceptron, numpy QR/lstsq, a closed-form distance, or the inequality itself.
"""

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments import EXPERIMENTS
from engine.experiments.perceptron import (
    PerceptronParams,
    _boundary_segment,
    _view_basis,
    augment,
    experiment,
    figures,
    geometric_margin,
    make_separable_data,
    max_margin_separator,
    project_onto_boundary,
    span_residual,
    threshold_unit,
    train_perceptron,
)

f64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_perceptron(X: np.ndarray, y: np.ndarray, max_epochs: int = 10_000):
    """The textbook loop, one point at a time: the indices updated on, and the final w."""
    w = np.zeros(X.shape[1])
    mistakes = []
    for _ in range(max_epochs):
        clean = True
        for i in range(len(X)):
            if y[i] * (X[i] @ w) <= 0:
                w = w + y[i] * X[i]
                mistakes.append(i)
                clean = False
        if clean:
            break
    return mistakes, w


# ---------------------------------------------------------------------------------------------
# CHECKS.md 1.1-a to 1.1-e


def test_threshold_unit_and_boundary_1_1_a():
    g = _gen(0)
    X = torch.randn(500, 5, generator=g, dtype=f64)
    w = torch.randn(5, generator=g, dtype=f64)
    b = torch.randn((), generator=g, dtype=f64)
    linear = torch.nn.Linear(5, 1, dtype=f64)
    with torch.no_grad():
        linear.weight.copy_(w[None, :])
        linear.bias.copy_(b[None])
        reference = torch.sign(linear(X))[:, 0]
    assert int((threshold_unit(X, w, b) != reference).sum()) == 0

    X_proj = project_onto_boundary(X, w, b)
    assert (X_proj @ w + b).abs().max() < 1e-12
    distance = (X @ w + b).abs() / torch.linalg.vector_norm(w)
    torch.testing.assert_close(
        torch.linalg.vector_norm(X - X_proj, dim=1), distance, rtol=0, atol=1e-12
    )
    # A-1.1-2: [x; 1]ᵀ[w; b] = xᵀw + b (not the sheet's [x, -1], which flips b).
    X_aug = augment(X)
    assert torch.equal(X_aug[:, :5], X) and torch.equal(X_aug[:, 5], torch.ones(500, dtype=f64))
    torch.testing.assert_close(X_aug @ torch.cat([w, b[None]]), X @ w + b, rtol=0, atol=1e-12)
    assert not torch.allclose(X_aug @ torch.cat([w, -b[None]]), X @ w + b)


def test_geometric_margin_is_a_signed_distance_1_1_b():
    g = _gen(1)
    X = torch.randn(300, 4, generator=g, dtype=f64)
    y = torch.where(torch.rand(300, generator=g, dtype=f64) < 0.5, -1.0, 1.0).to(f64)
    w = torch.randn(4, generator=g, dtype=f64)
    b = float(torch.randn((), generator=g, dtype=f64))
    gamma = geometric_margin(w, b, X, y)
    for c in (0.01, 3.0, 1e4):
        torch.testing.assert_close(geometric_margin(c * w, c * b, X, y), gamma, rtol=0, atol=1e-12)
    # Reference: y times the signed distance to the foot of the perpendicular.
    w_np, X_np, y_np = w.numpy(), X.numpy(), y.numpy()
    foot = X_np - np.outer((X_np @ w_np + b) / (w_np @ w_np), w_np)
    signed = np.sign(X_np @ w_np + b) * np.linalg.norm(X_np - foot, axis=1)
    np.testing.assert_allclose(gamma.numpy(), y_np * signed, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="w != 0"):
        geometric_margin(torch.zeros(4, dtype=f64), b, X, y)


def test_max_margin_separator_beats_the_perceptron_1_1_c():
    data = make_separable_data(2, 60, 0.3, 1.0, generator=_gen(2))
    X, y, u = data.X.numpy(), data.y.numpy(), data.u.numpy()
    gamma_u = np.min(y * (X @ u))
    assert gamma_u >= 0.3 - 1e-12

    result = train_perceptron(data.X, data.y)
    assert result.converged
    w_p = result.w.numpy()
    gamma_perceptron = np.min(y * (X @ w_p)) / np.linalg.norm(w_p)

    w_star, b_star = max_margin_separator(data.X, data.y)
    w_star = w_star.numpy()
    gamma_svm = np.min(y * (X @ w_star + b_star)) / np.linalg.norm(w_star)
    assert gamma_svm >= gamma_perceptron
    assert gamma_svm >= gamma_u * (1 - 1e-3)  # u is one separator; w* is the best one
    assert abs(gamma_svm * np.linalg.norm(w_star) - 1) < 1e-3  # γ(S) = 1/‖w*‖


def test_span_property_1_1_d():
    g = _gen(3)
    X = torch.randn(5, 20, generator=g, dtype=f64)
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=f64)
    result = train_perceptron(X, y)
    assert result.converged and len(result.mistakes) >= 1

    Q, _ = np.linalg.qr(X.numpy().T)  # (20, 5)
    P = Q @ Q.T
    for w_t in result.W[1:].numpy():
        assert np.linalg.norm(w_t - P @ w_t) / np.linalg.norm(w_t) < 1e-12
        assert span_residual(torch.from_numpy(w_t), X) < 1e-12
    # w_t is exactly the running sum of y_i x_i over the updates.
    steps = (y[:, None] * X)[result.mistakes]
    torch.testing.assert_close(result.W[1:], torch.cumsum(steps, dim=0), rtol=0, atol=1e-12)

    # span_residual of a vector off the span: the lstsq distance, from numpy.
    v = torch.randn(20, generator=g, dtype=f64)
    coef, *_ = np.linalg.lstsq(X.numpy().T, v.numpy(), rcond=None)
    expected = np.linalg.norm(v.numpy() - X.numpy().T @ coef) / np.linalg.norm(v.numpy())
    assert span_residual(v, X) == pytest.approx(expected, rel=1e-10)


def _ball_with_slab(seed: int, n: int = 10, s: int = 500, gamma: float = 0.1):
    """CHECKS 1.1-e data, drawn by numpy rejection sampling (independent of the engine)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n)
    u /= np.linalg.norm(u)
    points = []
    while len(points) < s:
        z = rng.standard_normal(n)
        x = z / np.linalg.norm(z) * rng.uniform() ** (1 / n)
        if abs(x @ u) >= gamma:
            points.append(x)
    X = np.array(points)
    return X, np.sign(X @ u), u


@pytest.mark.parametrize("seed", range(5))
def test_novikoff_bound_at_every_update_1_1_e(seed):
    X, y, u = _ball_with_slab(seed)
    R = np.linalg.norm(X, axis=1).max()
    gamma = np.min(y * (X @ u))
    result = train_perceptron(torch.from_numpy(X), torch.from_numpy(y))
    assert result.converged

    W = result.W.numpy()  # (T + 1, 10)
    n_updates = len(W) - 1
    assert n_updates <= R**2 / gamma**2
    t = np.arange(1, n_updates + 1)
    assert np.all(W[1:] @ u >= t * gamma - 1e-9)
    assert np.all(np.linalg.norm(W[1:], axis=1) <= R * np.sqrt(t) + 1e-9)

    mistakes, w_ref = _reference_perceptron(X, y)
    assert result.mistakes.tolist() == mistakes
    np.testing.assert_allclose(W[-1], w_ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The data generator and the drawing helpers


@pytest.mark.parametrize(
    ("n", "s", "gamma", "R", "offset"),
    [(2, 200, 0.1, 1.0, 0.0), (7, 500, 0.3, 2.0, -0.5), (50, 1000, 0.01, 10.0, 1.0)],
)
def test_separable_data_has_the_promised_margin_and_radius(n, s, gamma, R, offset):
    data = make_separable_data(n, s, gamma, R, offset, generator=_gen(4))
    X, y, u, c = data.X.numpy(), data.y.numpy(), data.u.numpy(), data.c
    assert X.shape == (s, n) and y.shape == (s,)
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-14)
    assert c == pytest.approx(offset * R)
    assert np.all(y * (X @ u + c) >= gamma - 1e-12)
    assert np.all(np.linalg.norm(X + c * u, axis=1) <= R * (1 + 1e-12))  # in the shifted ball
    again = make_separable_data(n, s, gamma, R, offset, generator=_gen(4))
    assert torch.equal(again.X, data.X) and torch.equal(again.y, data.y)


def test_view_basis_and_boundary_segment():
    g = _gen(5)
    u = torch.randn(6, generator=g, dtype=f64)
    u /= torch.linalg.vector_norm(u)
    w_star = torch.randn(6, generator=g, dtype=f64)
    for w in (w_star, 3 * u):  # the second has no component off u: fallback direction
        B = _view_basis(u, w)
        torch.testing.assert_close(B.T @ B, torch.eye(2, dtype=f64), rtol=0, atol=1e-12)
        torch.testing.assert_close(B[:, 0], u, rtol=0, atol=0)
    torch.testing.assert_close(_view_basis(u[:2], w_star[:2]), torch.eye(2, dtype=f64))

    B = _view_basis(u, w_star)
    xs, ys = _boundary_segment(w_star, 0.3, B, 2.0)
    a = (B.T @ w_star).numpy()
    np.testing.assert_allclose(a[0] * xs + a[1] * ys + 0.3, 0, atol=1e-12)
    assert np.all(np.abs(np.stack([xs, ys])) <= 2.0 + 1e-12)
    assert np.all(np.isclose(np.maximum(np.abs(xs), np.abs(ys)), 2.0))  # ends on the square
    far_x, _ = _boundary_segment(w_star, 1e3, B, 2.0)
    assert far_x.size == 0  # the line misses the square


# ---------------------------------------------------------------------------------------------
# The experiment: the run's checks, determinism, cancellation, bounds


def _collect_extends(frames, figure, index):
    """Concatenate what the run appended to one trace."""
    xs, ys = [], []
    for f in frames:
        if f.figure == figure and f.op == "extend" and index in f.indices:
            k = f.indices.index(index)
            xs.append(np.asarray(f.update["x"][k]))
            ys.append(np.asarray(f.update["y"][k]))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n": 5, "bias": "augmented"},
        {"bias": "augmented", "offset": 0.5, "seed": 7},
        {"n": 50, "s": 20, "gamma": 0.05},
    ],
)
def test_run_passes_its_checks(overrides):
    params = PerceptronParams(**overrides)
    frames = run_to_end(experiment, params, RunContext(seed=params.seed, device="cpu"))
    checks = checks_of(frames)
    assert len(checks) == 5
    assert all(c.passed for c in checks.values()), [c for c in checks.values() if not c.passed]

    # The bound from data regenerated with the same seed, measured here with numpy.
    data = make_separable_data(
        params.n, params.s, params.gamma, params.R, params.offset, generator=_gen(params.seed)
    )
    X, y = data.X.numpy(), data.y.numpy()
    u = np.append(data.u.numpy(), data.c) if params.bias == "augmented" else data.u.numpy()
    if params.bias == "augmented":
        X = np.hstack([X, np.ones((len(X), 1))])
    u = u / np.linalg.norm(u)
    R, gamma = np.linalg.norm(X, axis=1).max(), np.min(y * (X @ u))
    novikoff = checks["Novikoff bound"]
    assert novikoff.reference == pytest.approx(R**2 / gamma**2, rel=1e-12)

    # Every update was streamed, once, in order, and satisfies both inequalities.
    t, inner = _collect_extends(frames, "bounds", 0)
    _, norm = _collect_extends(frames, "bounds", 1)
    assert np.array_equal(t, np.arange(1, novikoff.measured + 1))
    assert np.all(inner >= t * gamma - 1e-9)
    assert np.all(norm <= R * np.sqrt(t) + 1e-9)
    _, mistakes = _collect_extends(frames, "mistakes", 0)
    assert np.array_equal(mistakes, t)
    assert frames[-1].metrics["mistakes"] == novikoff.measured


def test_run_gives_a_proper_span_check_when_d_exceeds_the_updates():
    params = PerceptronParams(n=50, s=20, gamma=0.05)
    check = checks_of(run_to_end(experiment, params))["w_t stays in the span of the data"]
    assert check.passed and "proper subspace" in check.detail


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, z) for x, z in zip(a, b, strict=True))
    return a == b


def test_run_is_deterministic():
    params = PerceptronParams(n=3, bias="augmented", offset=-0.4, seed=11)
    first = run_to_end(experiment, params, RunContext(seed=params.seed, device="cpu"))
    second = run_to_end(experiment, params, RunContext(seed=params.seed, device="cpu"))
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert (a.figure, a.op, a.indices, a.progress) == (b.figure, b.op, b.indices, b.progress)
        assert a.metrics == b.metrics
        assert _same(a.update, b.update)
        assert (a.checks is None) == (b.checks is None)
    assert [c.as_dict() for c in first[-1].checks] == [c.as_dict() for c in second[-1].checks]
    other = run_to_end(experiment, params.model_copy(update={"seed": 12}))
    assert not _same(first[1].update, other[1].update)


@pytest.mark.parametrize("allowed_calls", [0, 3])
def test_run_stops_when_asked(allowed_calls):
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > allowed_calls

    params = PerceptronParams(n=20, s=1000, gamma=0.01, max_updates=20000)
    ctx = RunContext(seed=0, device="cpu", should_stop=should_stop)
    frames = list(experiment.run(params, ctx))
    assert calls == allowed_calls + 1  # returned at the first True
    assert all(f.checks is None for f in frames)
    with pytest.raises(ValueError, match="without a final frame"):
        checks_of(frames)
    full = run_to_end(experiment, params)
    assert len(frames) < len(full)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 1),
        ("n", 51),
        ("s", 9),
        ("s", 2001),
        ("gamma", 0.0),
        ("gamma", 0.6),
        ("R", 0.05),
        ("R", 11.0),
        ("bias", "threshold"),
        ("offset", 1.5),
        ("max_epochs", 0),
        ("max_epochs", 1001),
        ("max_updates", 20001),
        ("seed", -1),
    ],
)
def test_params_out_of_bounds_name_the_field(field, value):
    overrides = {field: value}
    if field == "offset":
        overrides["bias"] = "augmented"
    with pytest.raises(ValidationError) as info:
        PerceptronParams(**overrides)
    assert info.value.errors()[0]["loc"] == (field,)


def test_params_cross_field_rules_name_the_field():
    with pytest.raises(ValidationError, match="R must exceed gamma") as info:
        PerceptronParams(gamma=0.3, R=0.2)
    assert info.value.errors()[0]["loc"] == ("R",)
    with pytest.raises(ValidationError, match="needs bias='augmented'") as info:
        PerceptronParams(offset=0.2)
    assert info.value.errors()[0]["loc"] == ("offset",)
    with pytest.raises(ValidationError):
        PerceptronParams(learning_rate=1.0)
    schema = PerceptronParams.model_json_schema()["properties"]
    assert all("description" in p and "default" in p for p in schema.values())


def test_frames_are_few_and_fit_the_figures():
    params = PerceptronParams(
        n=5,
        s=2000,
        gamma=0.01,
        R=10.0,
        bias="augmented",
        offset=-1.0,
        max_epochs=1000,
        max_updates=20000,
    )
    figs = figures(params)
    frames = run_to_end(experiment, params, RunContext(seed=0, device="cpu"))
    assert len(frames) <= 300
    assert checks_of(frames)["Novikoff bound"].measured == 20000  # the update budget binds
    for f in frames:
        if f.figure is None:
            continue
        assert f.figure in figs
        if f.op in ("extend", "restyle"):
            assert all(0 <= i < len(figs[f.figure].data) for i in f.indices)
            assert all(len(v) == len(f.indices) for v in f.update.values())
    progress = [f.progress for f in frames if f.progress is not None]
    assert all(step <= total for step, total in progress)


def test_figures_start_empty_and_are_labelled():
    for n in (2, 9):
        figs = figures(PerceptronParams(n=n))
        assert set(figs) == {"data", "bounds", "mistakes", "margin"}
        for fig in figs.values():
            assert fig.layout.title.text and fig.layout.xaxis.title.text
            assert all(len(trace.x) == 0 for trace in fig.data)
    assert figures(PerceptronParams(n=9))["data"].layout.xaxis.title.text == "⟨u, x⟩"


def test_experiment_is_registered_and_its_latex_converts():
    assert EXPERIMENTS["perceptron"] is experiment
    assert experiment.section.number == "1.1"
    assert {f.erratum for f in experiment.formulas} >= {"E-1.1-1", "A-1.1-2", "G-1.1-3"}
    checks = checks_of(run_to_end(experiment, PerceptronParams()))
    for latex in [f.latex for f in experiment.formulas] + [c.formula for c in checks.values()]:
        assert "<math" in convert(latex)
