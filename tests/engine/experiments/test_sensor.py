"""Additive Gaussian noise (CHECKS.md 2.1-a) and the CCD blooming toy model (2.1-b)."""

# I is the image, as in the sheet (ruff reads the capital as a constant).
# ruff: noqa: E741

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from latex2mathml.converter import convert
from pydantic import ValidationError
from sklearn.datasets import load_digits

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments.sensor import (
    CCD_SIDE,
    SIGMA_SWEEP,
    SensorParams,
    add_noise,
    bloom,
    bloom_step,
    experiment,
    psnr_tolerance,
)
from engine.images import psnr
from tests.engine.frames import same_frames


def digit_image() -> torch.Tensor:
    """CHECKS.md's test image: a digit, bilinearly upsampled and zero-padded to 64×64, [0, 1]."""
    digit = torch.tensor(load_digits().images[0] / 16.0, dtype=torch.float64)
    big = F.interpolate(digit[None, None], size=(48, 48), mode="bilinear", align_corners=False)
    return F.pad(big, (8, 8, 8, 8))[0, 0].clamp(0, 1)


def test_checks_2_1_a_noise_variance_and_psnr():
    I = digit_image()
    sigma = 0.05
    I_noisy, _ = add_noise(I, sigma, torch.Generator().manual_seed(0))
    noise = (I_noisy - I).numpy().ravel()
    N = noise.size
    assert N == 64 * 64
    se = sigma**2 * math.sqrt(2 / (N - 1))
    assert abs(noise.var(ddof=1) - sigma**2) <= 4 * se
    assert abs(psnr(I_noisy, I) + 20 * math.log10(sigma)) <= 0.3


def test_noise_is_independent_of_the_image_and_zero_mean():
    I = digit_image()
    I_noisy, n = add_noise(I, 0.1, torch.Generator().manual_seed(1))
    torch.testing.assert_close(I_noisy - I, n, rtol=0, atol=1e-15)
    noise = n.numpy().ravel()
    assert abs(noise.mean()) <= 4 * 0.1 / math.sqrt(noise.size)
    assert abs(np.corrcoef(noise, I.numpy().ravel())[0, 1]) <= 4 / math.sqrt(noise.size)


def test_psnr_tolerance_is_0_3_db_for_large_images_and_4_se_for_small_ones():
    assert psnr_tolerance(128 * 128) == 0.3
    assert psnr_tolerance(64 * 64) == pytest.approx(4 * 10 / math.log(10) * math.sqrt(2 / 4096))


# ----------------------------------------------------------------------------------------------
# Blooming


def relax(q: torch.Tensor, C: float) -> tuple[np.ndarray, int]:
    steps = list(bloom(q, C, max_steps=4 * q.shape[0]))
    return (steps[-1] if steps else q).numpy(), len(steps)


def column_reference(Q: float, C: float, H: int, r0: int) -> np.ndarray:
    """Each side of the spot holds clip(S − (d − 1)C, 0, C) at distance d, S its share of the
    excess: half each, the share one side cannot hold moved to the other."""
    E = Q - C
    up = min(E / 2, r0 * C)
    up = max(up, E - (H - 1 - r0) * C)  # the lower side is full: the rest goes up
    down = E - up
    rows = np.arange(H)
    d = np.abs(rows - r0)
    share = np.where(rows < r0, up, down)
    return np.where(d == 0, C, np.clip(share - (d - 1) * C, 0, C))


@pytest.mark.parametrize("spot, r0", [(10.0, 24), (20.0, 24), (13.7, 0), (47.0, 47),
                                      (30.5, 5), (47.0, 20), (10.0, 2)])
def test_checks_2_1_b_blooming(spot, r0):
    C, c0 = 5000.0, 17
    Q = spot * C
    q = torch.zeros((CCD_SIDE, CCD_SIDE), dtype=torch.float64)
    q[r0, c0] = Q
    final, steps = relax(q, C)
    assert np.count_nonzero(np.delete(final, c0, axis=1)) == 0
    assert abs(final.sum() - Q) <= 1e-9 * Q
    assert final.max() <= C
    assert np.sum(final[:, c0] >= C * (1 - 1e-9)) >= 9
    np.testing.assert_allclose(final[:, c0], column_reference(Q, C, CCD_SIDE, r0),
                               rtol=0, atol=1e-9 * C)
    assert steps <= 2 * CCD_SIDE  # out to an edge and back down the column at most


def test_bloom_step_moves_charge_only_within_columns_and_one_row_at_a_time():
    rng = np.random.default_rng(0)
    C = 1.0
    q = torch.tensor(rng.uniform(0, 2.5, (20, 30)) * (rng.random((20, 30)) < 0.3))
    q_next = bloom_step(q, C)
    torch.testing.assert_close(q_next.sum(0), q.sum(0), rtol=0, atol=1e-12)
    # A site's charge after one step comes from itself and its vertical neighbours only.
    received = (q_next - torch.minimum(q, torch.tensor(C))).clamp(min=0)
    neighbours = torch.zeros_like(q)
    neighbours[1:] += (q[:-1] - C).clamp(min=0)
    neighbours[:-1] += (q[1:] - C).clamp(min=0)
    assert torch.all(received <= neighbours + 1e-12)
    final, _ = relax(q, C)
    assert final.max() <= C
    np.testing.assert_allclose(final.sum(0), q.sum(0).numpy(), rtol=1e-12)


def test_below_capacity_nothing_moves():
    q = torch.full((8, 8), 0.5, dtype=torch.float64)
    assert list(bloom(q, 1.0, max_steps=10)) == []


# ----------------------------------------------------------------------------------------------
# The run


def test_default_run_passes_its_checks_and_draws_every_figure():
    params = SensorParams()
    frames = run_to_end(experiment, params, RunContext(seed=0, device="cpu"))
    checks = checks_of(frames)
    assert len(checks) == 9
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert {f.figure for f in frames if f.op} == set(experiment.figures(params))
    assert frames[-1].metrics["saturated"] == 19  # Q = 20 C: 19 full sites and two halves


def test_psnr_sweep_runs_parallel_to_the_prediction():
    """One standard draw z scaled by each σ: PSNR + 20 log10 σ = −10 log10 mean(z²)."""
    frames = run_to_end(experiment, SensorParams(size=64))
    sweep = [f for f in frames if f.figure == "psnr" and f.op == "extend"]
    sigma = np.concatenate([f.update["x"][0] for f in sweep])
    raw = np.concatenate([f.update["y"][0] for f in sweep])
    clipped = np.concatenate([f.update["y"][1] for f in sweep])
    np.testing.assert_allclose(sigma, SIGMA_SWEEP)
    offset = raw + 20 * np.log10(sigma)
    np.testing.assert_allclose(offset, offset[0], atol=1e-9)
    assert abs(offset[0]) < 0.5
    assert np.all(clipped >= raw - 1e-9) and clipped[-1] > raw[-1] + 1  # clipping removes noise


def test_small_picture_and_edge_spot_pass():
    params = SensorParams(size=32, image="text", sigma=0.3, spot=47, spot_row=0, spot_col=47)
    checks = checks_of(run_to_end(experiment, params))
    assert all(c.passed for c in checks.values()), checks


def test_same_seed_same_frames():
    params = SensorParams(size=32, seed=3)
    assert same_frames(run_to_end(experiment, params), run_to_end(experiment, params))
    other = SensorParams(size=32, seed=4)
    assert not same_frames(run_to_end(experiment, params), run_to_end(experiment, other))


@pytest.mark.parametrize("field, value", [("sigma", 0.0), ("sigma", 0.5), ("size", 16),
                                          ("spot", 9.0), ("spot", 48.0), ("capacity", 10.0),
                                          ("spot_row", -1.0), ("spot_col", 48.0),
                                          ("image", "lena")])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        SensorParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_clicks_and_formulas():
    (click,) = experiment.clicks
    assert (click.figure, click.x, click.y) == ("ccd", "spot_col", "spot_row")
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert experiment.formulas[0].erratum == "G-2.1-1"
