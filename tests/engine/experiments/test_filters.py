"""The filters experiment (CHECKS.md 2.2-b) against scipy.ndimage and numpy.fft."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError
from scipy import ndimage

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments import kernels
from engine.experiments.filters import FiltersParams, experiment, kernel_of, ramp_errors
from engine.images import load_image
from tests.engine.frames import same_frames


def restyled(frames, figure):
    """The z each restyle of ``figure`` sent, in order."""
    return [f.update["z"][0] for f in frames if f.figure == figure and f.op == "restyle"]


def test_default_run_passes_all_checks_and_draws_every_figure():
    params = FiltersParams()
    frames = run_to_end(experiment, params, RunContext(seed=0, device="cpu"))
    checks = checks_of(frames)
    assert len(checks) == 6
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    figs = experiment.figures(params)
    drawn = {f.figure for f in frames if f.op is not None}
    assert drawn == set(figs) - {"kernel"}  # the kernel is drawn from the params up front
    np.testing.assert_array_equal(figs["kernel"].data[0].z, kernels.SOBEL_X)
    # The signed Sobel output goes out as 8-bit levels around 128, and matches scipy.
    (levels,) = restyled(frames, "output")
    assert levels.dtype == np.uint8 and levels.shape == (128, 128)
    I = load_image("camera", 128).double().numpy()  # noqa: E741
    reference = ndimage.correlate(I, kernels.SOBEL_X, mode="mirror")
    expected = np.rint(127.5 + 127.5 * reference / np.abs(reference).max())
    assert np.abs(levels.astype(float) - expected).max() <= 1
    # |F[k̃]| of Sobel_x, 8 levels of 255: 0 at u = 0, largest (8) at u = ±1/4, v = 0.
    (response,) = restyled(frames, "response")
    assert response[64, 64] == 0 and response[64, 64 + 32] == response.max() == 255
    assert frames[-1].metrics["dc_gain"] == pytest.approx(0, abs=1e-12)
    assert frames[-1].metrics["max_gain"] == pytest.approx(8, rel=1e-12)
    progress = [f.progress for f in frames if f.progress is not None]
    assert progress[-1] == (5, 5) and all(0 < s <= t for s, t in progress)
    assert frames[-1].metrics["M_x"] == 8 and frames[-1].metrics["kernel_sum"] == 0


@pytest.mark.parametrize("kernel", ["gaussian", "box", "laplacian", "high_pass", "diff_y",
                                    "prewitt_y", "custom"])
@pytest.mark.parametrize("boundary", ["mirror", "wrap"])
def test_other_kernels_pass_their_checks(kernel, boundary):
    params = FiltersParams(kernel=kernel, boundary=boundary, size=64, sigma=2.5, box_size=5)
    checks = checks_of(run_to_end(experiment, params, RunContext(seed=3, device="cpu")))
    assert all(c.passed for c in checks.values()), [(c.name, c.measured) for c in
                                                    checks.values() if not c.passed]


def test_unsigned_kernels_show_gray_output():
    params = FiltersParams(kernel="box", box_size=5, size=64, boundary="nearest")
    frames = run_to_end(experiment, params, RunContext(device="cpu"))
    (gray,) = restyled(frames, "output")
    I = load_image("camera", 64).double().numpy()  # noqa: E741
    reference = ndimage.uniform_filter(I, 5, mode="nearest")
    assert np.abs(gray.astype(float) - 255 * reference).max() <= 1
    assert experiment.figures(params)["output"].data[0].colorscale[0][1] == "black"
    # The Box's response is largest at u = v = 0, where it is Σk = 1.
    (response,) = restyled(frames, "response")
    assert response[32, 32] == 255 and frames[-1].metrics["dc_gain"] == pytest.approx(1)


def test_ramp_errors_are_rounding_for_every_kernel():
    for name in ["sobel_x", "gaussian", "diff_x", "high_pass"]:
        k = kernels.kernel(name, sigma=3.0, box_size=7)
        errors = ramp_errors(k, 7, 0.6, -0.2)
        assert max(errors.values()) < 1e-12, (name, errors)
    # Flipped (the convolution kernel), Sobel_x has M_x = −8: on the ramp it gives −8a.
    flipped = kernels.SOBEL_X[::-1, ::-1].copy()
    assert kernels.moments(flipped) == (0.0, -8.0, 0.0)
    out = kernels.correlate_valid(kernels.ramp(8, 0.6, -0.2), torch.from_numpy(flipped))
    np.testing.assert_allclose(out.numpy(), -8 * 0.6, rtol=0, atol=1e-12)


def test_custom_kernel():
    params = FiltersParams(kernel="custom", custom_kernel="1 2 1, 2 4 2, 1 2 1")
    np.testing.assert_array_equal(kernel_of(params), [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert kernel_of(FiltersParams(kernel="custom")).sum() == 1  # sharpen δ − ∇²
    for text, message in [("1 2 3", "needs 9"), ("__import__('os')", "pattern"),
                          ("1 2 3 4 5 6 7 8 101", "100"), ("1 2 3 4 5 6 7 8 9e9", "100")]:
        with pytest.raises(ValidationError, match=message) as error:
            FiltersParams(custom_kernel=text)
        assert error.value.errors()[0]["loc"] == ("custom_kernel",)


def test_same_seed_same_frames():
    params = FiltersParams(size=64, seed=4)
    first = run_to_end(experiment, params, RunContext(seed=4, device="cpu"))
    assert same_frames(first, run_to_end(experiment, params, RunContext(seed=4, device="cpu")))
    other = FiltersParams(size=64, seed=5)
    # The ramp's slopes come from the seed.
    assert not same_frames(first, run_to_end(experiment, other, RunContext(seed=5,
                                                                          device="cpu")))


@pytest.mark.parametrize("field, value", [("size", 32), ("size", 257), ("sigma", 0.5),
                                          ("sigma", 4.5), ("box_size", 4), ("box_size", 17),
                                          ("kernel", "sharpen"), ("boundary", "reflect")])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        FiltersParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_params_schema_and_formulas():
    schema = FiltersParams.model_json_schema()["properties"]
    for name, prop in schema.items():
        assert "default" in prop and prop.get("description"), name
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert "G-2.2-3" in {f.erratum for f in experiment.formulas}
