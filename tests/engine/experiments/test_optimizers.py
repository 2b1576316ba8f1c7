"""1.3 Optimizer race: the run's checks on every surface and mode, the streamed paths against
plain numpy optimizers, and the protocol properties (determinism, cancellation, bounded
frames, first frame fast, parameter validation)."""

import math
import time

import numpy as np
import pytest
from latex2mathml.converter import convert
from pydantic import ValidationError

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments import EXPERIMENTS
from engine.experiments.optimizers import (
    FRAME_CHUNKS,
    SURFACE_RACERS,
    OptimizersParams,
    chosen,
    experiment,
    figures,
    surface_of,
)

RACE_CHECKS = {
    "quadratic": {
        "Update rules = torch.optim, step for step",
        "ε-critical point within 2L(h₀ − min h)/ε² steps (GD, η = 1/L)",
        "Linear rate of GD (η = 1/L) on the quadratic",
        "Nesterov's rate bound (η = 1/L, optimal β)",
        "heavy ball (optimal) beats GD by ≈ 2√κ",
        "Nesterov (optimal) beats GD by ≈ √κ",
    },
    "noisy_quadratic": {
        "Update rules = torch.optim, step for step",
        "ε-critical point within 2L(h₀ − min h)/ε² steps (GD, η = 1/L)",
        "SGD variance: E‖g_B − ∇h‖² = V[θ](S)/b",
        "SGD: E[h(θ_t)] − min h = O(1/t) (strongly convex, smooth)",
    },
}
GENERIC_CHECKS = {
    "Update rules = torch.optim, step for step",
    "ε-critical point within 2L(h₀ − min h)/ε² steps (GD, η = 1/L)",
}


def _run(params, seed=None, should_stop=None):
    ctx = RunContext(seed=params.seed if seed is None else seed, device="cpu",
                     should_stop=should_stop)
    return run_to_end(experiment, params, ctx)


def _all_pass(frames):
    checks = checks_of(frames)
    failed = [(c.name, c.measured, c.detail) for c in checks.values() if not c.passed]
    assert not failed, failed
    return checks


def _collect(frames, figure, index, attrs=("x", "y")):
    """What the run appended to one trace, concatenated per attribute."""
    parts = {a: [] for a in attrs}
    for f in frames:
        if f.figure == figure and f.op == "extend" and index in f.indices:
            k = f.indices.index(index)
            for a in attrs:
                parts[a].append(np.asarray(f.update[a][k], dtype=np.float64))
    return [np.concatenate(parts[a]) for a in attrs]


def _numpy_A(p: OptimizersParams) -> np.ndarray:
    phi = math.radians(p.quad_angle)
    R = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    return R @ np.diag([p.quad_mu, p.quad_L]) @ R.T


def _numpy_gd(A, theta0, eta, steps):
    path = [np.asarray(theta0, dtype=np.float64)]
    for _ in range(steps):
        path.append(path[-1] - eta * A @ path[-1])
    return np.array(path)


# ---------------------------------------------------------------------------------------------
# Every surface and mode ends with its checks passed.


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"quad_mu": 0.05, "quad_L": 50.0, "quad_angle": -60.0, "x0": 4.0, "y0": 4.0},
        {"quad_mu": 3.0, "quad_L": 3.0},  # κ = 1: the √κ checks do not apply
        {"x0": 9.0, "y0": -9.5, "quad_angle": 90.0},  # a start beyond the default view
        {"surface": "noisy_quadratic", "seed": 3},
        {"surface": "rosenbrock", "x0": -1.5, "y0": 2.0, "gd_eta": 1e-3, "momentum_eta": 1e-3,
         "nesterov_eta": 1e-3},
        {"surface": "beale", "x0": 1.0, "y0": 1.0},  # ∂h/∂x = 0 on y = 1
        {"surface": "himmelblau", "x0": 0.0, "y0": 0.0, "steps": 500},
        {"surface": "saddle", "x0": -2.0, "y0": 1e-3, "adam_sheet": True, "sgd": True},
    ],
)
def test_race_passes_its_checks(overrides):
    params = OptimizersParams(**overrides)
    checks = _all_pass(_run(params))
    expected = RACE_CHECKS.get(params.surface, GENERIC_CHECKS)
    if params.quad_L / params.quad_mu < 4:
        expected = expected - {"heavy ball (optimal) beats GD by ≈ 2√κ",
                               "Nesterov (optimal) beats GD by ≈ √κ"}
    assert set(checks) == expected


def test_default_run_streams_gd_exactly_as_numpy():
    params = OptimizersParams()
    frames = _run(params)
    checks = _all_pass(frames)
    A = _numpy_A(params)
    path = _numpy_gd(A, [params.x0, params.y0], params.gd_eta, params.steps)
    gd = [r.key for r in chosen(params)].index("gd")
    x, y = _collect(frames, "surface", SURFACE_RACERS + gd)
    np.testing.assert_allclose(np.stack([x, y], 1), path, rtol=1e-9, atol=1e-280)
    steps, loss = _collect(frames, "loss", gd)
    assert np.array_equal(steps, np.arange(params.steps + 1))  # every step, once, in order
    gaps = 0.5 * np.einsum("ti,ij,tj->t", path, A, path)
    np.testing.assert_allclose(loss, gaps, rtol=1e-9, atol=1e-300)
    _, distance = _collect(frames, "distance", gd)
    np.testing.assert_allclose(distance, np.linalg.norm(path, axis=1), rtol=1e-9, atol=1e-300)
    metrics = frames[-1].metrics
    assert metrics["GD: steps to tol"] == int(np.argmax(gaps <= params.tol))
    assert metrics["GD: final h − min h"] == pytest.approx(gaps[-1], rel=1e-9)
    assert metrics["h(θ₀) − min h"] == pytest.approx(gaps[0], rel=1e-12)
    assert metrics["κ = L/μ"] == pytest.approx(20.0)
    # Kingma & Ba's Adam and the sheet's Adam only differ in the UI's labels and the detail.
    assert "A-1.3.3-6" in checks["Update rules = torch.optim, step for step"].detail


def test_every_racer_draws_its_whole_path_and_a_diverging_one_stops():
    params = OptimizersParams(adam_sheet=True, sgd=True, gd_eta=0.2, steps=300)  # 0.2 > 2/L
    frames = _run(params)
    racers = chosen(params)
    assert len(racers) == 8
    for k, racer in enumerate(racers):
        x, _ = _collect(frames, "surface", SURFACE_RACERS + k)
        assert len(x) == params.steps + 1
        if racer.key == "gd":
            assert np.isnan(x[-1]) and np.isfinite(x[:3]).all()
        else:
            assert np.isfinite(x).all(), racer.label
    assert frames[-1].metrics["GD: final h − min h"].startswith("diverged at t = ")
    _all_pass(frames)


def test_noisy_race_uses_minibatch_gradients_from_the_seed():
    params = OptimizersParams(surface="noisy_quadratic", steps=200)
    first, again = _run(params), _run(params)
    other = _run(params.model_copy(update={"seed": 1}), seed=1)
    x1, _ = _collect(first, "surface", SURFACE_RACERS)
    x2, _ = _collect(again, "surface", SURFACE_RACERS)
    x3, _ = _collect(other, "surface", SURFACE_RACERS)
    assert np.array_equal(x1, x2) and not np.array_equal(x1, x3)
    # Not plain GD: the stochastic path leaves the full-batch one.
    data = surface_of(params).data
    A, center = data.A.numpy(), data.theta_hat.numpy()
    full = center + _numpy_gd(A, [params.x0 - center[0], params.y0 - center[1]],
                              params.gd_eta, params.steps)
    assert x1[0] == full[0, 0] and not np.allclose(x1, full[:, 0], rtol=1e-3)


def test_cloud_streams_medians_and_fractions_that_numpy_reproduces():
    params = OptimizersParams(mode="cloud", starts=64, steps=400, cloud_radius=2.0,
                              momentum=False, nesterov=False, adagrad=False, rmsprop=False,
                              adam=False)
    frames = _run(params)
    _all_pass(frames)
    starts = [f for f in frames if f.figure == "surface" and f.op == "restyle"][0]
    S = np.stack([starts.update["x"][0], starts.update["y"][0]], 1)
    assert S.shape == (64, 2) and np.array_equal(S[0], [params.x0, params.y0])
    assert np.all(np.linalg.norm(S - S[0], axis=1) <= 2.0)
    A = _numpy_A(params)
    paths = np.stack([_numpy_gd(A, s, params.gd_eta, params.steps) for s in S])  # (64, T+1, 2)
    gaps = 0.5 * np.einsum("bti,ij,btj->bt", paths, A, paths)
    steps, median = _collect(frames, "loss", 0)
    t = steps.astype(int)
    assert t[0] == 0 and t[-1] == params.steps and len(t) <= 110
    lower_median = np.sort(gaps[:, t], axis=0)[(64 - 1) // 2]  # torch.median's convention
    np.testing.assert_allclose(median, lower_median, rtol=1e-8, atol=1e-300)
    _, fraction = _collect(frames, "distance", 0)
    np.testing.assert_allclose(fraction, np.mean(gaps[:, t] <= params.tol, axis=0))
    x, _ = _collect(frames, "surface", SURFACE_RACERS)  # the first drawn path: from θ₀
    np.testing.assert_allclose(x, paths[0, t, 0], rtol=1e-9, atol=1e-280)
    assert frames[-1].metrics["GD: fraction within tol"] == pytest.approx(fraction[-1])


def test_grid_sweeps_eta_and_races_the_best_setting():
    params = OptimizersParams(mode="grid", grid_size=8, steps=200, grid_eta_min=1e-3,
                              grid_eta_max=0.2, nesterov=False, adagrad=False, rmsprop=False,
                              adam=False)
    frames = _run(params)
    _all_pass(frames)
    sweep = [f for f in frames if f.figure == "sweep"]
    assert 1 <= len(sweep) <= 10
    z = np.asarray(sweep[-1].update["z"][0], dtype=np.float64)  # GD: (β rows) × η
    assert z.shape == (8, 8) and np.all(z == z[0])  # β does not enter GD
    A = _numpy_A(params)
    etas = np.geomspace(1e-3, 0.2, 8)
    gap0 = 0.5 * np.array([params.x0, params.y0]) @ A @ np.array([params.x0, params.y0])
    top = math.log10(gap0) + 3
    for i, eta in enumerate(etas):
        end = _numpy_gd(A, [params.x0, params.y0], eta, params.steps)[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            gap = 0.5 * end @ A @ end
        expected = min(math.log10(max(gap, 1e-300)), top) if np.isfinite(gap) else top
        assert z[0, i] == pytest.approx(expected, abs=1e-4)  # float32 on the wire
    best = frames[-1].metrics["GD: best η"]
    assert best == pytest.approx(etas[int(np.argmin(z[0]))])
    x, _ = _collect(frames, "surface", SURFACE_RACERS)
    path = _numpy_gd(A, [params.x0, params.y0], best, params.steps)
    np.testing.assert_allclose(x, path[:, 0], rtol=1e-9, atol=1e-280)
    assert "heavy ball: best β" in frames[-1].metrics


# ---------------------------------------------------------------------------------------------
# The protocol: determinism, cancellation, bounded frames, a fast first frame.


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, z) for x, z in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("mode", ["race", "cloud"])
def test_run_is_deterministic(mode):
    params = OptimizersParams(mode=mode, surface="noisy_quadratic", steps=100, starts=16, seed=5)
    first, second = _run(params), _run(params)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert (a.figure, a.op, a.indices, a.progress) == (b.figure, b.op, b.indices, b.progress)
        assert _same(a.update, b.update) and _same(a.metrics, b.metrics)
    assert [c.as_dict() for c in first[-1].checks] == [c.as_dict() for c in second[-1].checks]


@pytest.mark.parametrize(("mode", "allowed_calls"), [("race", 0), ("race", 5), ("cloud", 3),
                                                     ("grid", 1)])
def test_run_stops_when_asked(mode, allowed_calls):
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > allowed_calls

    params = OptimizersParams(mode=mode, steps=2000, starts=64, grid_size=8)
    frames = list(experiment.run(params, RunContext(seed=0, device="cpu",
                                                    should_stop=should_stop)))
    assert calls == allowed_calls + 1  # returned at the first True
    assert all(f.checks is None for f in frames)
    with pytest.raises(ValueError, match="without a final frame"):
        checks_of(frames)


@pytest.mark.parametrize("overrides", [
    {"adam_sheet": True, "sgd": True, "steps": 5000},
    {"mode": "cloud", "starts": 100, "steps": 1000},
    {"mode": "grid", "grid_size": 6, "steps": 1000, "adam_sheet": True, "sgd": True},
])
def test_frames_are_few_and_fit_the_figures(overrides):
    params = OptimizersParams(**overrides)
    figs = {name: fig.to_plotly_json() for name, fig in figures(params).items()}
    frames = _run(params)
    assert len(frames) <= 200
    for f in frames:
        if f.figure is None:
            continue
        assert f.figure in figs
        data = figs[f.figure]["data"]
        if f.op in ("extend", "restyle"):
            assert all(0 <= i < len(data) for i in f.indices)
            assert all(len(v) == len(f.indices) for v in f.update.values())
        if f.op == "extend":
            assert all(isinstance(data[i].get(attr), list | tuple | np.ndarray)
                       for attr in f.update for i in f.indices)
            points = sum(np.asarray(v).size for values in f.update.values() for v in values)
            assert points <= 50_000
    progress = [f.progress for f in frames if f.progress is not None]
    assert all(step <= total for step, total in progress)
    assert progress[-1][0] == progress[-1][1]


def test_a_2000_step_race_streams_its_first_frame_within_100_ms():
    params = OptimizersParams(steps=2000)
    assert math.ceil(params.steps / FRAME_CHUNKS) <= 50
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for frame in experiment.run(params, RunContext(seed=0, device="cpu")):
            if frame.op == "extend":
                times.append(time.perf_counter() - started)
                break
    assert min(times) < 0.1, times


# ---------------------------------------------------------------------------------------------
# Parameters, figures, registration.


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("x0", math.nan), ("x0", math.inf), ("y0", -math.inf), ("y0", "nan"), ("x0", 11.0),
        ("gd_eta", 0.0), ("gd_eta", -0.1), ("adam_eta", 0.0), ("momentum_beta", 1.0),
        ("steps", 0), ("steps", 5001), ("starts", 4097), ("grid_size", 65),
        ("surface", "banana"), ("mode", "swarm"), ("adagrad_delta", 0.0), ("tol", math.nan),
        ("quad_mu", 0.0), ("batch", 65), ("seed", -1),
    ],
)
def test_params_out_of_bounds_name_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        OptimizersParams(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"quad_mu": 5.0, "quad_L": 2.0}, "quad_L", "at least quad_mu"),
        ({"surface": "noisy_quadratic", "quad_mu": 0.1, "quad_L": 50.0}, "quad_L", "κ"),
        ({"samples": 10, "batch": 20}, "batch", "must not exceed samples"),
        ({k: False for k in ("gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")},
         "sgd", "at least one optimizer"),
        ({"mode": "cloud", "starts": 4096, "steps": 5000}, "starts", "budget"),
        ({"mode": "grid", "grid_size": 64, "steps": 5000}, "grid_size", "budget"),
        ({"grid_eta_min": 0.1, "grid_eta_max": 0.01}, "grid_eta_max", "must exceed"),
    ],
)
def test_params_cross_field_rules_name_the_field(overrides, field, message):
    with pytest.raises(ValidationError, match=message) as info:
        OptimizersParams(**overrides)
    assert info.value.errors()[0]["loc"] == (field,)


def test_params_accept_the_bench_sweep_and_reject_unknown_fields():
    OptimizersParams(mode="cloud", starts=4096, steps=2000)  # 4,096 × 6 × 2,000
    OptimizersParams(mode="race", starts=4096, steps=5000)  # starts only count in a cloud
    with pytest.raises(ValidationError):
        OptimizersParams(learning_rate=0.1)
    schema = OptimizersParams.model_json_schema()["properties"]
    assert all("description" in p and "default" in p for p in schema.values())


@pytest.mark.parametrize("mode", ["race", "cloud", "grid"])
def test_figures_start_empty_and_are_labelled(mode):
    params = OptimizersParams(mode=mode, starts=20)
    figs = figures(params)
    expected = {"surface", "loss", "distance", "theory"} | ({"sweep"} if mode == "grid" else set())
    assert set(figs) == expected
    for name, fig in figs.items():
        assert fig.layout.title.text
        if name != "sweep":
            assert all(len(t.x) == 0 for t in fig.data if t.type == "scatter"
                       and t.name not in ("minima", "start θ₀"))
    contour = figs["surface"].data[0]
    assert contour.type == "contour" and np.asarray(contour.z).shape == (121, 121)
    racers = len(chosen(params))
    per_racer = min(params.starts, 16) if mode == "cloud" else 1
    assert len(figs["surface"].data) == SURFACE_RACERS + racers * per_racer
    assert figs["loss"].layout.yaxis.type == "log"


def test_the_view_holds_the_start():
    figs = figures(OptimizersParams(surface="rosenbrock", x0=-4.0, y0=8.0))
    x_range, y_range = figs["surface"].layout.xaxis.range, figs["surface"].layout.yaxis.range
    assert x_range[0] < -4.0 and y_range[1] > 8.0


def test_experiment_is_registered_clickable_and_its_latex_converts():
    assert EXPERIMENTS["optimizers"] is experiment
    assert experiment.section.number == "1.3"
    assert [(c.figure, c.x, c.y) for c in experiment.clicks] == [("surface", "x0", "y0")]
    assert {f.erratum for f in experiment.formulas} >= {"A-1.3.2-4", "G-1.3.2-5", "A-1.3.3-6",
                                                         "G-1.3.4-7"}
    checks = {}
    for surface in ("quadratic", "noisy_quadratic"):
        checks |= checks_of(_run(OptimizersParams(surface=surface, steps=100)))
    for latex in [f.latex for f in experiment.formulas] + [c.formula for c in checks.values()]:
        assert "<math" in convert(latex)
