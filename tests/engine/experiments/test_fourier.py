"""The Fourier experiment (CHECKS.md 2.2-c, 2.2-d, 2.2-e) against numpy.fft and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError

from engine.core import RunContext, checks_of, click_inputs, run_to_end
from engine.experiments.fourier import (
    AMPLITUDE,
    NU,
    PHASE,
    FourierParams,
    apparent,
    band_limited,
    experiment,
    folded,
)
from tests.engine.frames import same_frames


def cpu_run(params: FourierParams, seed: int = 0):
    return run_to_end(experiment, params, RunContext(seed=seed, device="cpu"))


def test_dirac_linearity_duality():
    """CHECKS.md 2.2-c in 1-D, float64, 1e-12."""
    N, x0 = 64, 11
    d = torch.zeros(N, dtype=torch.float64)
    d[x0] = 1
    u = np.arange(N)
    np.testing.assert_allclose(torch.fft.fft(d).numpy(), np.exp(-2j * np.pi * u * x0 / N),
                               rtol=0, atol=1e-12)
    rng = np.random.default_rng(0)
    f1, f2 = rng.standard_normal(N), rng.standard_normal(N)
    identity = np.real(np.fft.ifft(np.fft.fft(f1) * np.fft.fft(np.eye(N)[0])))
    np.testing.assert_allclose(identity, f1, rtol=0, atol=1e-12)  # δ * f = f
    lhs = torch.fft.fft(torch.from_numpy(2.5 * f1 - 0.7 * f2)).numpy()
    np.testing.assert_allclose(lhs, 2.5 * np.fft.fft(f1) - 0.7 * np.fft.fft(f2), rtol=0,
                               atol=1e-12)
    twice = torch.fft.fft(torch.fft.fft(torch.from_numpy(f1))).numpy()
    np.testing.assert_allclose(twice / N, f1[(-u) % N], rtol=0, atol=1e-12)  # F F f = N f[−u]


def test_aliasing_70_hz_at_100_hz_peaks_at_exactly_30_hz():
    """CHECKS.md 2.2-d."""
    frames = cpu_run(FourierParams(f=70, fs=100))
    check = checks_of(frames)["Aliasing: rfft peak at the folded frequency"]
    assert check.passed and check.measured == 30.0 and check.reference == 30.0
    assert frames[-1].metrics["peak_hz"] == 30.0
    (spectrum,) = [f for f in frames if f.figure == "spectrum" and f.op == "restyle"]
    bins, amplitude = spectrum.update["x"][0], spectrum.update["y"][0]
    assert bins[np.argmax(amplitude)] == 30.0
    assert amplitude.max() == pytest.approx(1.0, abs=1e-12)  # a unit sine, whole cycles
    assert np.sort(amplitude)[-2] < 1e-12  # no leakage into any other bin


def test_folding_predicts_the_rfft_peak_for_allowed_params():
    """For f, f_s on the 0.1 Hz grid, 10 s of samples hold whole cycles, so the peak is the
    bin of f_a exactly, including tones that fold to 0 Hz or to f_s/2."""
    rng = np.random.default_rng(1)
    pairs = [(70.0, 100.0), (50.0, 100.0), (100.0, 100.0), (150.0, 100.0), (0.1, 10.0),
             (500.0, 499.9), (499.9, 10.0), (12.3, 45.6), (5.0, 10.1)]
    pairs += [(round(rng.uniform(0.1, 500), 1), round(rng.uniform(10, 500), 1))
              for _ in range(200)]
    for f, fs in pairs:
        _, S, R = folded(f, fs)
        f_a = abs(R) / 10
        assert f_a == pytest.approx(float(apparent(np.array(f), np.array(fs))), abs=1e-9)
        assert f_a <= fs / 2 + 1e-12
        t = np.arange(S) / fs  # T = 10 s
        X = np.abs(np.fft.rfft(np.sin(2 * np.pi * f * t + PHASE)))
        assert np.argmax(X) / 10 == f_a, (f, fs)


def test_params_round_to_a_tenth_of_a_hertz():
    params = FourierParams(f=70.26, fs=99.94)
    assert params.f == 70.3 and params.fs == 99.9
    checks = checks_of(cpu_run(params))
    alias = checks["Aliasing: rfft peak at the folded frequency"]
    assert alias.passed and alias.measured == pytest.approx(29.6)


def test_reconstruction_sinc_beats_the_gaussian():
    """CHECKS.md 2.2-e with numpy's sinc as the reference: the truncated Shannon series from
    401 samples stays within 2e-2 on [−20, 20], the Gaussian kernel does not."""
    n = np.arange(-200, 201)
    x = np.linspace(-20, 20, 801)
    f_n, truth = band_limited(n), band_limited(x)
    sinc_err = np.abs(np.sinc(x[:, None] - n[None, :]) @ f_n - truth).max()
    w = 0.5
    G = np.exp(-((x[:, None] - n[None, :]) ** 2) / (2 * w**2)) / (math.sqrt(2 * math.pi) * w)
    gauss_err = np.abs(G @ f_n - truth).max()
    assert sinc_err < 2e-2 and sinc_err < gauss_err
    assert sinc_err == pytest.approx(1.49e-3, rel=0.01)
    assert gauss_err == pytest.approx(0.266, rel=0.01)
    # The Gaussian's error is mostly the damping of the 0.27 component: 0.5·(1 − e^{−2π²w²ν²}).
    assert gauss_err >= AMPLITUDE[1] * (1 - math.exp(-2 * math.pi**2 * w**2 * NU[1] ** 2))
    checks = checks_of(cpu_run(FourierParams(width=w)))
    assert checks["Sinc reconstruction is within 2·10⁻²"].measured == pytest.approx(sinc_err,
                                                                                   abs=1e-12)
    assert checks["Sinc beats the Gaussian kernel"].reference == pytest.approx(gauss_err,
                                                                              abs=1e-12)


@pytest.mark.parametrize("width", [0.2, 1.0, 2.0])
def test_sinc_beats_every_allowed_gaussian(width):
    checks = checks_of(cpu_run(FourierParams(width=width, size=64)))
    assert checks["Sinc beats the Gaussian kernel"].passed


def test_default_run_passes_all_checks_and_draws_every_figure():
    params = FourierParams()
    frames = cpu_run(params)
    checks = checks_of(frames)
    assert len(checks) == 11
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    figs = experiment.figures(params)
    drawn = {f.figure for f in frames if f.op is not None}
    assert drawn == set(figs) - {"aliasing_map"}  # the map is drawn from the params up front
    assert len(figs["aliasing_map"].data[0].z) > 0
    # The reconstruction streams in chunks that add up to the whole grid.
    chunks = [f for f in frames if f.figure == "reconstruction" and f.op == "extend"]
    assert len(chunks) == 8 and sum(len(c.update["x"][0]) for c in chunks) == 801
    progress = [f.progress for f in frames if f.progress is not None]
    assert progress[-1][0] == progress[-1][1] and len(progress) >= 10
    # Spectra go out as 8-bit levels: log magnitude 0 … 255, the DC term the brightest.
    (magnitude,) = [f.update["z"][0] for f in frames if f.figure == "magnitude"]
    assert magnitude.dtype == np.uint8 and magnitude[64, 64] == 255


@pytest.mark.parametrize("kernel", ["sobel_x", "diff_x", "box", "high_pass", "laplacian"])
def test_convolution_theorem_for_other_kernels(kernel):
    checks = checks_of(cpu_run(FourierParams(kernel=kernel, size=64, box_size=7, x0=31,
                                             f=499.9, fs=10)))
    assert all(c.passed for c in checks.values()), [c.name for c in checks.values()
                                                    if not c.passed]


def test_clicks_set_the_tone_and_the_rate():
    (click,) = click_inputs(experiment)
    assert click == {"figure": "aliasing_map", "x": "f", "y": "fs", "points": None}
    schema = FourierParams.model_json_schema()["properties"]
    assert schema["f"]["type"] == schema["fs"]["type"] == "number"
    # The map's axes span the fields' bounds, so every click lands on an allowed value.
    fig = experiment.figures(FourierParams())["aliasing_map"]
    assert list(fig.layout.xaxis.range) == [0, schema["f"]["maximum"]]
    assert list(fig.layout.yaxis.range) == [schema["fs"]["minimum"], schema["fs"]["maximum"]]


def test_same_seed_same_frames():
    params = FourierParams(size=64, seed=2)
    first = cpu_run(params, seed=2)
    assert same_frames(first, cpu_run(params, seed=2))
    assert not same_frames(first, cpu_run(FourierParams(size=64, seed=3), seed=3))


def test_cancellation_stops_without_checks():
    calls = 0

    def stop_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    frames = list(experiment.run(FourierParams(size=64),
                                 RunContext(device="cpu", should_stop=stop_after_three)))
    assert frames and all(f.checks is None for f in frames)


@pytest.mark.parametrize("field, value", [("size", 32), ("size", 512), ("f", 0.0), ("f", 501),
                                          ("fs", 5), ("fs", 600), ("width", 0.1), ("width", 3),
                                          ("x0", 32), ("box_size", 6), ("kernel", "custom")])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        FourierParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_params_schema_and_formulas():
    schema = FourierParams.model_json_schema()["properties"]
    for name, prop in schema.items():
        assert "default" in prop and prop.get("description"), name
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert "G-2.2-4" in {f.erratum for f in experiment.formulas}
