"""The deblur experiment: its checks pass on reasonable params, its frames fit its figures, its
runs are reproducible, its params are bounded, and it takes uploads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments.deblur import DeblurParams, experiment
from engine.images import unpack_images

UPLOAD = "upload-" + "0123456789abcdef" * 2


def run(**kwargs):
    params = DeblurParams(**kwargs)
    frames = run_to_end(experiment, params, RunContext(params.seed, "cpu"))
    return params, frames


def assert_all_passed(frames) -> dict:
    checks = checks_of(frames)
    failed = {c.name: (c.measured, c.reference, c.detail) for c in checks.values() if not c.passed}
    assert not failed, failed
    return checks


def test_default_run_passes_all_checks_and_draws_every_figure():
    params, frames = run()
    checks = assert_all_passed(frames)
    assert len(checks) == 11
    figures = experiment.figures(params)
    drawn = {f.figure for f in frames if f.op is not None}
    assert drawn == set(figures)
    for frame in frames:
        if frame.op is not None:
            assert frame.op in ("extend", "restyle")
            assert all(i < len(figures[frame.figure].data) for i in frame.indices)
    metrics = frames[-1].metrics
    # The restorations rank as the theory says (PSNR in dB, default: motion 15 px, σ = 0.01).
    assert metrics["psnr_naive"] < metrics["psnr_degraded"] < metrics["psnr_regularised"]
    assert metrics["psnr_sheet"] < metrics["psnr_regularised"] - 3  # E-2.2-6, shift 3 px
    assert metrics["psnr_wiener"] > metrics["psnr_regularised"]
    assert metrics["psnr_rl"] > metrics["psnr_degraded"] + 3


def test_images_are_modest_uint8_and_downloads_are_the_full_pictures():
    params, frames = run(size=300, rl_iterations=5)
    for frame in frames:
        if frame.figure == "images":
            (z,) = frame.update["z"]
            assert z.dtype == np.uint8 and z.shape == (150, 150)  # pooled by 2 for the page
    images = unpack_images(frames[-1].artifact)
    assert set(images) == set(experiment.downloads)
    for image in images.values():
        assert image.dtype == np.uint8 and image.shape == (300, 300)


@pytest.mark.parametrize("kwargs", [
    dict(noise_sigma=0.0, size=128),
    dict(kernel="gaussian", blur_sigma=6.0, size=64, noise_sigma=0.2, shift=0),
    dict(kernel="defocus", radius=15.0, size=128, noise_sigma=1e-4, epsilon=1e-6),
    dict(kernel="motion", length=41, angle=90, size=64, rl_iterations=200, shift=8),
    dict(kernel="motion", length=8, angle=0, size=128, noise_sigma=0.0, image="checkerboard"),
    dict(image="text", kernel="gaussian", blur_sigma=0.5, noise_sigma=0.05, size=96),
])
def test_checks_pass_on_other_reasonable_params(kwargs):
    _, frames = run(**kwargs)
    checks = assert_all_passed(frames)
    if kwargs.get("noise_sigma", 0.01) == 0:
        assert "No noise: J = h∗I exactly" in checks
        assert "Without noise the inverse filter undoes the blur (where F[h] ≠ 0)" in checks
    else:
        assert "Wiener filter beats the naive inverse (σ > 0)" in checks


def test_learned_cnn_trains_and_is_scored():
    params, frames = run(size=64, learned=True, learned_steps=50, rl_iterations=5)
    checks = assert_all_passed(frames)
    check = checks["Learned CNN improves on its input (unseen crops, input ≤ 40 dB)"]
    assert check.measured < check.reference
    training = np.concatenate([f.update["y"][0] for f in frames
                               if f.figure == "learned_loss" and f.indices == [0]])
    assert len(training) == params.learned_steps
    assert "psnr_learned" in frames[-1].metrics
    assert "learned_loss" in experiment.figures(params)
    assert "learned_loss" not in experiment.figures(DeblurParams())


def test_same_seed_same_run_other_seed_other_noise():
    _, a = run(size=64, rl_iterations=5, seed=4)
    _, b = run(size=64, rl_iterations=5, seed=4)
    _, c = run(size=64, rl_iterations=5, seed=5)
    assert a[-1].metrics == b[-1].metrics and a[-1].artifact == b[-1].artifact
    assert a[-1].metrics["psnr_degraded"] != c[-1].metrics["psnr_degraded"]


def test_uploaded_picture():
    y, x = np.mgrid[:90, :120]
    pixels = (((x // 15 + y // 15) % 2) * 180 + 40 + (x % 7)).astype(np.uint8)
    params = DeblurParams(image=UPLOAD, size=64, rl_iterations=20)
    frames = run_to_end(experiment, params, RunContext(0, "cpu", uploads={UPLOAD: pixels}))
    assert_all_passed(frames)
    with pytest.raises(KeyError, match="upload"):
        run_to_end(experiment, params, RunContext(0, "cpu"))


def test_stops_when_asked():
    params = DeblurParams(size=64)
    frames = list(experiment.run(params, RunContext(0, "cpu", should_stop=lambda: True)))
    assert all(f.checks is None for f in frames)


@pytest.mark.parametrize("field, value", [
    ("size", 32), ("size", 1024), ("epsilon", 0.0), ("epsilon", 2.0), ("noise_sigma", -0.1),
    ("noise_sigma", 0.5), ("kernel", "box"), ("length", 1.0), ("shift", 9),
    ("rl_iterations", 0), ("rl_iterations", 201), ("learned_steps", 49),
    ("learned_steps", 501),
    ("image", "lena"), ("image", "upload-xyz"),
])
def test_params_bounds(field, value):
    with pytest.raises(ValidationError) as error:
        DeblurParams(**{field: value})
    assert error.value.errors()[0]["loc"] == (field,)


def test_click_sets_epsilon_and_sigma_on_log_axes_that_cover_their_ranges():
    (click,) = experiment.clicks
    schema = DeblurParams.model_json_schema()["properties"]
    layout = experiment.figures(DeblurParams())[click.figure].layout
    for field, axis in ((click.x, layout.xaxis), (click.y, layout.yaxis)):
        assert axis.type == "log"
        low, high = 10 ** np.asarray(axis.range)
        assert low <= max(schema[field]["minimum"], 1e-3) and high >= schema[field]["maximum"]


def test_formulas_render():
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert {f.erratum for f in experiment.formulas} >= {"A-2.2-5", "E-2.2-6"}


def test_runs_on_the_context_device():
    params = DeblurParams(size=64, rl_iterations=3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    frames = run_to_end(experiment, params, RunContext(0, device))
    assert_all_passed(frames)
