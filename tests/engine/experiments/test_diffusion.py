"""Denoising diffusion (CHECKS.md 1.10.3): the run's checks, its network, samplers and quality
measures, and the properties of the run (bounded frames, the slider, seeds, cancellation).

References are independent of the engine: the energy distance from scipy (1-D) and from
scipy's pairwise distances (2-D), nearest neighbours from scikit-learn, and the optimal
ε-predictor of Gaussian data in closed form (CHECKS.md 1.10.3-j).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError
from scipy.spatial.distance import cdist
from scipy.stats import energy_distance as scipy_energy_distance
from sklearn.neighbors import NearestNeighbors

from engine.core import Params, RunContext, checks_of, run_to_end
from engine.experiments import diffusion_figures as figs
from engine.experiments.diffusion import (
    SHOWN_DIGITS,
    SHOWN_POINTS,
    DiffusionParams,
    EpsilonNet,
    ddim_sample,
    ddpm_sample,
    energy_distance,
    experiment,
    make_net,
    nn_distance,
    train_step,
)
from engine.experiments.diffusion_schedules import make_schedule, posterior_mean
from engine.experiments.toy_data import parse_points
from tests.engine.frames import same_frames

SMALL = dict(T=50, train_steps=200, samples=200, ddim_steps=10, width=32)  # ~1 s
CHECK_NAMES = {
    "Forward marginal x_t | x₀",
    "Posterior mean and β̃_t: closed form = ε-form",
    "DDPM samples beat the untrained model and a Gaussian fit",
    "DDIM samples beat the untrained model and a Gaussian fit",
    "x_T ≈ N(0, I)",
}


@pytest.fixture(scope="module")
def default_run():
    params = DiffusionParams()
    return params, run_to_end(experiment, params, RunContext(seed=0, device="cpu"))


def frames_of(frames, figure, op=None):
    return [f for f in frames if f.figure == figure and (op is None or f.op == op)]


# ----------------------------------------------------------------------------------------------
# The default run: every check of the issue, on the run that just happened.


def test_default_run_passes_all_checks(default_run):
    params, frames = default_run
    checks = checks_of(frames)
    assert set(checks) == CHECK_NAMES
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.reference, check.detail)
    assert checks["Posterior mean and β̃_t: closed form = ε-form"].measured <= 1e-10
    ddpm = checks["DDPM samples beat the untrained model and a Gaussian fit"]
    # The samples are several times closer to held-out data than the Gaussian fit is.
    assert ddpm.measured < 0.25 * frames[-1].metrics["gaussian_fit_distance"]
    assert "SE" in checks["Forward marginal x_t | x₀"].detail


def test_default_run_streams_bounded_frames_in_order(default_run):
    params, frames = default_run
    assert len(frames) <= 300
    # The schedule comes first, then data and the forward process, all before training.
    assert (frames[0].figure, frames[0].op) == ("schedule", "react")
    first_loss = frames.index(frames_of(frames, "loss", "extend")[0])
    assert frames_of(frames, "forward", "restyle")[0] in frames[:first_loss]
    assert frames_of(frames, "data", "restyle")[0] in frames[:first_loss]
    loss = np.concatenate([f.update["y"][0] for f in frames_of(frames, "loss", "extend")])
    assert 100 <= len(loss) <= 1000 and loss[-1] < 0.7 * loss[0]
    clouds = frames_of(frames, "samples", "restyle")[1:]  # after the held-out data
    assert 20 <= len(clouds) <= 50
    for frame in clouds:
        assert frame.indices[0] in (figs.DDPM_CLOUD, figs.DDIM_CLOUD)
        assert len(frame.update["x"][0]) == SHOWN_POINTS <= 2000
        assert len(frame.update["x"]) == 1 + figs.PATHS  # the cloud and the paths so far
    progress = [f.progress for f in frames if f.progress]
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert progress[-1][0] <= progress[-1][1]


def test_the_sample_chart_ends_with_a_slider_over_stored_frames(default_run):
    params, frames = default_run
    final = frames_of(frames, "samples", "react")[-1].update
    names = [frame["name"] for frame in final["frames"]]
    assert 10 <= len(names) <= 31
    assert names[0] == f"t = {params.T}" and names[-1] == "t = 0"
    slider = final["layout"]["sliders"][0]
    assert slider["active"] == len(names) - 1
    assert [step["args"][0] for step in slider["steps"]] == [[name] for name in names]
    assert {step["method"] for step in slider["steps"]} == {"animate"}
    assert final["frames"][-1]["traces"] == [figs.DDPM_CLOUD, figs.DDIM_CLOUD]
    # The last stored frame is the final cloud; the first is noise x_T ~ N(0, I).
    from app.encoding import decode

    last, first = final["frames"][-1]["data"][0], final["frames"][0]["data"][0]
    np.testing.assert_array_equal(decode(last["x"]), decode(final["data"][figs.DDPM_CLOUD]["x"]))
    assert abs(float(np.std(decode(first["x"]))) - 1) < 0.1
    paths = [decode(final["data"][i]["x"]) for i in figs.DDPM_PATHS]
    assert all(len(p) == params.T + 1 for p in paths)


@pytest.mark.parametrize("seed", [1, 2])
def test_default_settings_pass_on_other_seeds(seed):
    frames = run_to_end(experiment, DiffusionParams(seed=seed),
                        RunContext(seed=seed, device="cpu"))
    failed = [(c.name, c.detail) for c in checks_of(frames).values() if not c.passed]
    assert not failed


def test_digits_run_passes_and_draws_image_grids():
    params = DiffusionParams(data="digits")
    frames = run_to_end(experiment, params, RunContext(seed=0, device="cpu"))
    checks = checks_of(frames)
    assert all(c.passed for c in checks.values()), [c.detail for c in checks.values()]
    grids = [f.update["z"][0] for f in frames_of(frames, "samples", "restyle")]
    rows = SHOWN_DIGITS // figs.GRID_COLS
    assert grids and all(z.shape == (rows * 9 - 1, figs.GRID_COLS * 9 - 1) for z in grids)
    forward = frames_of(frames, "forward", "restyle")[0].update["z"][0]
    assert forward.shape == (6 * 9 - 1, len(figs.forward_times(params.T)) * 9 - 1)
    assert np.nanmin(grids[-1]) >= -1 and np.nanmax(grids[-1]) <= 1  # x̂₀ clipped


def test_drawn_shape_is_learnt():
    shape = "-2,-1;0,1.5;2,-1"
    params = DiffusionParams(data="drawn", shape=shape, train_steps=1500)
    frames = run_to_end(experiment, params, RunContext(seed=3, device="cpu"))
    checks = checks_of(frames)
    assert all(c.passed for c in checks.values()), [c.detail for c in checks.values()]
    data = frames_of(frames, "data", "restyle")[0].update
    xy = np.stack([data["x"][0], data["y"][0]], axis=1)
    vertices = parse_points(shape)
    dense = np.concatenate([np.linspace(a, b, 500) for a, b in zip(vertices[:-1], vertices[1:],
                                                                    strict=True)])
    assert cdist(xy, dense).min(axis=1).mean() < 0.1


def test_quality_check_fails_when_ddim_divides_by_a_vanishing_alpha_bar():
    # The cosine schedule's ᾱ_T ~ 1e-7: without clipping x̂₀ = (x_T − √(1−ᾱ_T) ε̂)/√ᾱ_T blows
    # up the network's error; the check must catch that, not pass vacuously.
    params = DiffusionParams(schedule="cosine", clip_x0=False, **SMALL)
    checks = checks_of(run_to_end(experiment, params, RunContext(seed=0, device="cpu")))
    ddim = checks["DDIM samples beat the untrained model and a Gaussian fit"]
    assert not ddim.passed and ddim.measured > 10 * ddim.reference


# ----------------------------------------------------------------------------------------------
# Quality measures against independent references.


def test_energy_distance_against_scipy_and_pairwise_distances():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 300), rng.normal(0.3, 1.2, 200)
    # scipy: sqrt of the V-statistic version, whose within-set means include the zero diagonal.
    v_stat = scipy_energy_distance(x, y) ** 2
    xx = np.abs(x[:, None] - x[None]).mean()
    yy = np.abs(y[:, None] - y[None]).mean()
    u_stat = v_stat - xx / (len(x) - 1) - yy / (len(y) - 1)
    ours = energy_distance(torch.tensor(x)[:, None], torch.tensor(y)[:, None])
    assert ours == pytest.approx(u_stat, abs=1e-10)
    a, b = rng.normal(size=(300, 2)), rng.normal(size=(250, 2)) + [0.5, 0]
    n, m = len(a), len(b)
    reference = (2 * cdist(a, b).mean() - cdist(a, a).sum() / (n * (n - 1))
                 - cdist(b, b).sum() / (m * (m - 1)))
    assert energy_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(reference, abs=1e-10)
    same = energy_distance(torch.tensor(a), torch.tensor(rng.normal(size=(300, 2))))
    assert abs(same) < 0.1 * reference


def test_nn_distance_against_scikit_learn():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(120, 64)), rng.normal(size=(80, 64))
    d_xy = NearestNeighbors(n_neighbors=1).fit(y).kneighbors(x)[0].mean()
    d_yx = NearestNeighbors(n_neighbors=1).fit(x).kneighbors(y)[0].mean()
    assert nn_distance(torch.tensor(x), torch.tensor(y)) == pytest.approx(
        (d_xy + d_yx) / 2, abs=1e-10)


# ----------------------------------------------------------------------------------------------
# The network and the samplers.


def test_network_is_seeded_and_broadcasts_one_time_over_the_batch():
    params = DiffusionParams(width=32, depth=2, T=100)
    net = make_net(3, params, RunContext(seed=4, device="cpu"))
    same = make_net(3, params, RunContext(seed=4, device="cpu"))
    other = make_net(3, params, RunContext(seed=5, device="cpu"))
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    t = torch.full((7,), 40)
    assert net(x, t).shape == (7, 3)
    torch.testing.assert_close(net(x, t), same(x, t), rtol=0, atol=0)
    assert not torch.equal(net(x, t), other(x, t))
    torch.testing.assert_close(net(x, torch.tensor([40])), net(x, t))
    for module in net.modules():  # PyTorch's default init range U(±1/√fan_in)
        if isinstance(module, torch.nn.Linear):
            assert module.weight.abs().max() <= 1 / math.sqrt(module.in_features)


class Oracle(torch.nn.Module):
    """The optimal ε-predictor for data N(0, s0² I): ε*(x_t, t) = c_t x_t; counts its calls."""

    def __init__(self, schedule, s0: float) -> None:
        super().__init__()
        ab = schedule.alpha_bar
        self.c = torch.tensor(np.sqrt(1 - ab) / (ab * s0**2 + 1 - ab), dtype=torch.float32)
        self.batches: list[int] = []

    def forward(self, x, t):
        assert t.shape == (1,)  # one time for the whole batch
        self.batches.append(len(x))
        return self.c[t] * x


def test_samplers_make_one_batched_call_per_step_and_give_the_data_variance():
    s, s0 = make_schedule("linear", 200), 0.5
    g = torch.Generator().manual_seed(6)
    oracle = Oracle(s, s0)
    x_T = torch.randn(40_000, 2, generator=g)
    steps = list(ddpm_sample(oracle, x_T, s, s.beta, g))
    assert [t for t, _ in steps] == list(range(200, -1, -1))
    assert oracle.batches == [40_000] * 200
    var = float(steps[-1][1].var())
    assert abs(var / s0**2 - 1) < 0.05  # CHECKS.md 1.10.3-d: within 5 %
    oracle.batches.clear()
    steps = list(ddim_sample(oracle, x_T, s, 20))
    assert oracle.batches == [40_000] * 20 and steps[-1][0] == 0
    # DDIM (η = 0) steps along the probability-flow ODE: coarse with 20 steps, close with T.
    coarse = abs(float(steps[-1][1].var()) / s0**2 - 1)
    fine = abs(float(list(ddim_sample(oracle, x_T, s, 200))[-1][1].var()) / s0**2 - 1)
    assert fine < 0.05 and fine < coarse / 3
    # Deterministic: the same x_T gives the same samples.
    torch.testing.assert_close(list(ddim_sample(oracle, x_T, s, 20))[-1][1], steps[-1][1],
                               rtol=0, atol=0)


def test_training_learns_the_optimal_predictor_of_gaussian_data():
    # CHECKS.md 1.10.3-j: for data N(0, s0² I) the criterion's minimiser is ε = c_t x_t.
    params = DiffusionParams(T=200, width=64, depth=2)
    ctx = RunContext(seed=8, device="cpu")
    g, s, s0 = ctx.generator, make_schedule("linear", 200), 0.5
    ab = torch.as_tensor(s.alpha_bar, dtype=torch.float32)
    net = make_net(2, params, ctx)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(1500):
        train_step(net, optimiser, s0 * torch.randn(256, 2, generator=g), ab.sqrt(),
                   (1 - ab).sqrt(), g)
    with torch.no_grad():
        for t in (50, 100, 200):
            x_t = math.sqrt(s.alpha_bar[t]) * s0 * torch.randn(20_000, 2, generator=g) + math.sqrt(
                1 - s.alpha_bar[t]) * torch.randn(20_000, 2, generator=g)
            eps = net(x_t, torch.tensor([t]))
            c_fit = float((eps * x_t).sum() / (x_t * x_t).sum())  # least squares ε ≈ c x_t
            c_t = math.sqrt(1 - s.alpha_bar[t]) / (s.alpha_bar[t] * s0**2 + 1 - s.alpha_bar[t])
            assert c_fit == pytest.approx(c_t, rel=0.1), t


def test_posterior_check_uses_the_engines_posterior():
    # The run's exact check compares these functions; here once more against numbers.
    s = make_schedule("linear", 50)
    assert posterior_mean(0.0, 1.0, 1, s) == pytest.approx(1.0)  # t = 1: m = x_0
    assert posterior_mean(1.0, 0.0, 1, s) == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------------
# Properties of the run.



def test_same_seed_same_frames():
    params = DiffusionParams(seed=5, **SMALL)
    first = run_to_end(experiment, params, RunContext(seed=5, device="cpu"))
    assert same_frames(first, run_to_end(experiment, params, RunContext(seed=5, device="cpu")))
    other = DiffusionParams(seed=6, **SMALL)
    assert not same_frames(first, run_to_end(experiment, other, RunContext(seed=6,
                                                                            device="cpu")))


@pytest.mark.parametrize("stop_after", [3, 60, 150])
def test_cancellation_stops_without_checks(stop_after):
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > stop_after

    params = DiffusionParams(**SMALL)
    full = run_to_end(experiment, params, RunContext(seed=0, device="cpu"))
    frames = list(experiment.run(params, RunContext(seed=0, device="cpu", should_stop=stop)))
    assert all(f.checks is None for f in frames)
    assert 0 < len(frames) < len(full)
    with pytest.raises(ValueError, match="without a final frame"):
        checks_of(frames)


@pytest.mark.parametrize(
    "field, value",
    [("T", 49), ("T", 1001), ("width", 512), ("depth", 0), ("train_steps", 20_000),
     ("batch_size", 8), ("lr", 0.1), ("samples", 20_000), ("ddim_steps", 1), ("data", "mnist"),
     ("schedule", "sigmoid"), ("variance", "sigma"), ("shape", "x" * 2001)],
)
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        DiffusionParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    "params, field, message",
    [(dict(data="drawn"), "shape", "at least 2 points"),
     (dict(data="drawn", shape="1,1"), "shape", "at least 2 points"),
     (dict(data="drawn", shape="1,1;1,1"), "shape", "coincide"),
     (dict(shape="1,1;oops"), "shape", "point 2 is 'oops'"),
     (dict(shape="0,0;4,0"), "shape", "outside"),
     (dict(T=100, ddim_steps=101), "ddim_steps", "at most T = 100")],
)
def test_params_that_depend_on_each_other(params, field, message):
    with pytest.raises(ValidationError, match=message) as error:
        DiffusionParams(**params)
    assert error.value.errors()[0]["loc"] == (field,)
    DiffusionParams(data="drawn", shape="0,0;1,1")  # two distinct points suffice


def test_params_schema():
    assert issubclass(DiffusionParams, Params)
    with pytest.raises(ValidationError):
        DiffusionParams(steps=10)  # unknown fields are errors
    schema = DiffusionParams.model_json_schema()["properties"]
    for name, prop in schema.items():
        assert "default" in prop and prop.get("description"), name
        if "enum" in prop or prop.get("type") in ("string", "boolean"):
            continue
        if name != "seed":
            assert "minimum" in prop and "maximum" in prop, name
    assert schema["shape"]["maxLength"] == 2000
    assert set(schema["data"]["enum"]) == {"swiss_roll", "moons", "gaussians", "ring", "drawn",
                                           "digits"}


def test_figures_formulas_and_clicks():
    params = DiffusionParams(data="drawn", shape="-1,0;1,1")
    figures = experiment.figures(params)
    assert set(figures) == {"data", "schedule", "forward", "loss", "samples", "quality"}
    schedule = figures["schedule"]
    assert len(schedule.data[figs.SCHEDULE_ALPHA_BAR].x) == params.T + 1  # drawn up front
    assert list(figures["data"].layout.xaxis.range) == [-3, 3]
    assert list(figures["data"].data[figs.DATA_DRAWN].x) == [-1, 1]  # the clicked points
    assert len(figures["loss"].data[0].x) == 0
    digits = experiment.figures(DiffusionParams(data="digits"))
    assert digits["samples"].data[figs.DDPM_GRID].type == "heatmap"
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert {f.erratum for f in experiment.formulas} >= {"A-1.10.3-11", "G-1.10.3-12",
                                                        "A-1.10.3-13"}
    assert [(c.figure, c.points) for c in experiment.clicks] == [("data", "shape")]
    assert isinstance(make_net(2, DiffusionParams(), RunContext(device="cpu")), EpsilonNet)
