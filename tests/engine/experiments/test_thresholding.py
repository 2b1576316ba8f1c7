"""Thresholding and Otsu (CHECKS.md 2.2-a) against pixel-wise numpy and scikit-image."""

# I is the image, as in the sheet (ruff reads the capital as a constant).
# ruff: noqa: E741, SIM300

from __future__ import annotations

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError
from skimage.filters import threshold_otsu

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments.thresholding import (
    LEVELS,
    SIGMA_GRID,
    ThresholdingParams,
    _checks,
    class_histograms,
    error_landscape,
    experiment,
    level_index,
    observe,
    otsu_level,
    scene,
    sweep_errors,
    variance_split,
)
from tests.engine.frames import same_frames


def image(seed: int = 0, **params):
    """Ground truth, 8-bit levels and I = l/255 (numpy) of a synthetic scene."""
    p = ThresholdingParams(seed=seed, **params)
    truth, eps = scene(p, RunContext(seed=seed, device="cpu"))
    levels = observe(truth, eps, p, p.sigma)
    return truth, levels, levels.numpy() / (LEVELS - 1)


SCENES = [dict(), dict(sigma=0.0), dict(sigma=0.4, contrast=0.1), dict(gradient=0.4),
          dict(shapes=20, shape_size=0.3, size=64), dict(shapes=1, shape_size=0.03, size=32)]


@pytest.mark.parametrize("params", SCENES)
def test_regions_from_thresholds_partition_the_image(params):
    """CHECKS.md 2.2-a: labels from thresholds put each pixel in exactly one R_i."""
    _, levels, I = image(3, **params)
    thresholds = [0.25, 0.5, 0.75]  # N = 4 regions T_{i-1} ≤ I < T_i
    edges = [-np.inf, *thresholds, np.inf]
    regions = [(I >= lo) & (I < hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    assert np.all(sum(r.astype(int) for r in regions) == 1)
    labels = np.digitize(I, thresholds)
    for i, region in enumerate(regions):
        assert np.array_equal(region, labels == i)
    # Two regions from the run's rule: l ≥ k ⇔ I ≥ T.
    for T in np.random.default_rng(0).uniform(0, 1, 50):
        k = level_index(T)
        assert np.array_equal(levels.numpy() >= k, I >= T)


@pytest.mark.parametrize("params", SCENES)
def test_within_plus_between_variance_is_the_total(params):
    """CHECKS.md 2.2-a: σ_W²(T) + σ_B²(T) = σ² (1e-12), each term recomputed from pixels."""
    _, levels, I = image(1, **params)
    h = torch.bincount(levels.ravel(), minlength=LEVELS).double()
    sigma_B2, sigma_W2 = (t.numpy() for t in variance_split(h))
    total = np.var(I)
    np.testing.assert_allclose(sigma_B2 + sigma_W2, total, rtol=0, atol=1e-12)
    for k in range(1, LEVELS, 17):
        low, high = I[I < k / 255], I[I >= k / 255]
        if len(low) and len(high):
            w0, w1 = len(low) / I.size, len(high) / I.size
            assert sigma_W2[k] == pytest.approx(w0 * low.var() + w1 * high.var(), abs=1e-12)
            assert sigma_B2[k] == pytest.approx(w0 * w1 * (low.mean() - high.mean()) ** 2,
                                                abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("params", SCENES)
def test_otsu_agrees_with_scikit_image(seed, params):
    _, levels, _ = image(seed, **params)
    h = torch.bincount(levels.ravel(), minlength=LEVELS).double()
    k = otsu_level(variance_split(h)[0])
    # skimage thresholds 8-bit images as l > t, i.e. l ≥ t + 1.
    assert abs(k - (threshold_otsu(levels.numpy().astype(np.uint8)) + 1)) <= 1


def test_otsu_on_two_gaussians_lands_between_them():
    rng = np.random.default_rng(0)
    I = np.concatenate([rng.normal(0.3, 0.05, 5000), rng.normal(0.7, 0.05, 5000)])
    levels = torch.tensor(np.round(np.clip(I, 0, 1) * 255).astype(np.int64))
    k = otsu_level(variance_split(torch.bincount(levels, minlength=LEVELS).double())[0])
    assert 0.45 < k / 255 < 0.55


@pytest.mark.parametrize("params", SCENES)
def test_error_iou_dice_of_every_threshold_against_numpy(params):
    truth, levels, I = image(2, **params)
    curves = sweep_errors(*class_histograms(levels, truth))
    G = truth.numpy()
    for k in range(LEVELS):
        B = I >= k / 255
        TP, FP, FN = np.sum(B & G), np.sum(B & ~G), np.sum(~B & G)
        assert curves["error"][k].item() == pytest.approx((FP + FN) / G.size, abs=1e-15)
        union = TP + FP + FN
        assert curves["iou"][k].item() == pytest.approx(TP / union if union else 1.0)
        assert curves["dice"][k].item() == pytest.approx(2 * TP / (2 * TP + FP + FN)
                                                         if union else 1.0)


def test_landscape_row_at_the_runs_sigma_is_the_runs_error_curve():
    p = ThresholdingParams(sigma=float(SIGMA_GRID[5]))
    truth, eps = scene(p, RunContext(seed=0, device="cpu"))
    rows, otsu_k, best_k = error_landscape(truth, eps, p, SIGMA_GRID[5:6])
    curves = sweep_errors(*class_histograms(observe(truth, eps, p, p.sigma), truth))
    np.testing.assert_array_equal(rows[0], curves["error"].numpy())
    assert best_k[0] == int(np.argmin(rows[0]))


def test_scene_has_both_classes_and_the_shapes_it_asks_for():
    for shapes in (1, 5, 20):
        truth, _, _ = image(0, shapes=shapes, size=64)
        assert 0 < truth.sum() < truth.numel()
    truth, levels, _ = image(0, sigma=0.0, contrast=0.4)
    values = set(np.unique(levels.numpy()))  # b = 0.3 and b + c = 0.7, 8-bit
    assert values == {round(0.3 * 255), round(0.7 * 255)}


def test_default_run_passes_its_checks_and_draws_every_figure():
    params = ThresholdingParams()
    frames = run_to_end(experiment, params, RunContext(seed=0, device="cpu"))
    checks = checks_of(frames)
    assert len(checks) == 5
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert {f.figure for f in frames if f.op} == set(experiment.figures(params))
    metrics = frames[-1].metrics
    # At the default the foreground is rare, and Otsu (blind to the classes' weights of the
    # error) sits below the lowest-error T: reported, not checked.
    assert metrics["error_otsu"] >= metrics["error_lowest"]
    assert metrics["T"] == 0.5 and metrics["error"] == pytest.approx(
        float(np.mean((image(0)[2] >= 0.5) != image(0)[0].numpy())))


def test_use_otsu_segments_at_otsus_threshold():
    frames = run_to_end(experiment, ThresholdingParams(use_otsu=True, T=0.1))
    metrics = frames[-1].metrics
    assert metrics["T"] == metrics["T_otsu"] != 0.1
    assert all(c.passed for c in checks_of(frames).values())


def test_error_check_fails_on_a_wrong_curve():
    truth, levels, I = image(0)
    curves = {k: v.numpy().copy() for k, v in sweep_errors(*class_histograms(levels, truth))
              .items()}
    h = torch.bincount(levels.ravel(), minlength=LEVELS).double()
    sigma_B2, sigma_W2 = (t.numpy() for t in variance_split(h))
    k_T = level_index(0.5)
    R = [levels < k_T, levels >= k_T]
    curves["error"][k_T] += 1 / I.size  # one pixel miscounted
    checks = {c.name: c for c in _checks(I, levels.numpy(), truth.numpy(), R, 0.5, k_T, curves,
                                         sigma_B2, sigma_W2, otsu_level(torch.tensor(sigma_B2)))}
    assert not checks["Error at T recomputed with numpy"].passed
    sigma_W2[7] += 1e-9
    checks = _checks(I, levels.numpy(), truth.numpy(), R, 0.5, k_T, curves, sigma_B2, sigma_W2,
                     otsu_level(torch.tensor(sigma_B2)))
    assert not next(c for c in checks if c.name.startswith("Within")).passed


def test_same_seed_same_frames():
    params = ThresholdingParams(size=48, seed=5)
    assert same_frames(run_to_end(experiment, params), run_to_end(experiment, params))
    other = ThresholdingParams(size=48, seed=6)
    assert not same_frames(run_to_end(experiment, params), run_to_end(experiment, other))


@pytest.mark.parametrize("field, value", [("T", -0.1), ("T", 1.1), ("contrast", 0.0),
                                          ("sigma", 0.6), ("gradient", 0.6), ("shapes", 0),
                                          ("shapes", 21), ("shape_size", 0.5), ("size", 16),
                                          ("size", 512)])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        ThresholdingParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_clicks_name_number_fields_and_formulas_render():
    fields = ThresholdingParams.model_fields
    for click in experiment.clicks:
        assert click.figure in experiment.figures(ThresholdingParams())
        assert fields[click.x].annotation is float and fields[click.y].annotation is float
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert experiment.formulas[0].erratum == "A-2.2-2"
