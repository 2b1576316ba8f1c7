"""The kernel table (ERRATA G-2.2-3, CHECKS.md 2.2-b) against scipy.ndimage and numpy.fft."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.datasets import load_digits

from engine.experiments import kernels

TABLE = ["laplacian", "prewitt_x", "prewitt_y", "sobel_x", "sobel_y", "gaussian", "box",
         "high_pass", "diff_x", "diff_y"]


def digit_image() -> torch.Tensor:
    """CHECKS.md's test image: a load_digits digit, bilinearly upsampled and zero-padded to
    64×64, values in [0, 1] (float64)."""
    digit = torch.tensor(load_digits().images[0] / 16.0)
    up = F.interpolate(digit[None, None], size=(48, 48), mode="bilinear", align_corners=False)
    return F.pad(up, (8, 8, 8, 8))[0, 0]


def test_the_table_as_written_in_the_errata():
    np.testing.assert_array_equal(kernels.kernel("laplacian"),
                                  [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(kernels.kernel("sobel_x"), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(kernels.kernel("sobel_y"), kernels.kernel("sobel_x").T)
    np.testing.assert_array_equal(kernels.kernel("prewitt_x"), [[-1, 0, 1]] * 3)
    np.testing.assert_array_equal(kernels.kernel("diff_x"), [[-1, 1]])
    np.testing.assert_array_equal(kernels.kernel("diff_y"), [[-1], [1]])
    np.testing.assert_allclose(kernels.kernel("box"), np.full((3, 3), 1 / 9), rtol=0, atol=0)
    high = kernels.kernel("high_pass", box_size=5)
    assert high[2, 2] == pytest.approx(1 - 1 / 25) and high[0, 0] == pytest.approx(-1 / 25)
    assert abs(high.sum()) < 1e-15
    with pytest.raises(ValueError, match="kernel must be one of"):
        kernels.kernel("sharpen")
    with pytest.raises(ValueError, match="box_size must be odd, got 4"):
        kernels.box(4)


def test_ramp_gives_the_slopes():
    """CHECKS.md 2.2-b: on I = ax + by (F.conv2d, cross-correlation) Sobel_x/8 = a, Prewitt_x/6
    = a, Sobel_xᵀ/8 = b, Diff_x = a, Laplacian = 0, the box leaves the ramp unchanged; 1e-12."""
    a, b = 0.37, -1.21
    I = kernels.ramp(16, a, b)  # noqa: E741

    def valid(name: str) -> torch.Tensor:
        return kernels.correlate_valid(I, torch.from_numpy(kernels.kernel(name)))

    tol = dict(rtol=0, atol=1e-12)
    torch.testing.assert_close(valid("sobel_x") / 8, torch.full((14, 14), a, dtype=I.dtype), **tol)
    torch.testing.assert_close(valid("sobel_y") / 8, torch.full((14, 14), b, dtype=I.dtype), **tol)
    torch.testing.assert_close(valid("prewitt_x") / 6, torch.full((14, 14), a, dtype=I.dtype),
                               **tol)
    torch.testing.assert_close(valid("diff_x"), torch.full((16, 15), a, dtype=I.dtype), **tol)
    torch.testing.assert_close(valid("diff_y"), torch.full((15, 16), b, dtype=I.dtype), **tol)
    torch.testing.assert_close(valid("laplacian"), torch.zeros(14, 14, dtype=I.dtype), **tol)
    torch.testing.assert_close(valid("box"), I[1:-1, 1:-1], **tol)
    # The moments predict any kernel: Σk·I + a M_x + b M_y.
    assert kernels.moments(kernels.SOBEL_X) == (0.0, 8.0, 0.0)
    assert kernels.moments(kernels.PREWITT_X.T) == (0.0, 0.0, 6.0)
    assert kernels.moments(kernels.DIFF_X) == (0.0, 1.0, 0.0)


def test_discrete_gaussian_sums_to_one():
    """CHECKS.md 2.2-b: σ = 1.2 sampled on 9×9 sums to 1 within 2e-3; with the run's radius
    ⌊4σ + ½⌋ it does so for every allowed σ (within 2e-4)."""
    G = kernels.gaussian(1.2, radius=4)
    assert G.shape == (9, 9)
    assert abs(G.sum() - 1) < 2e-3
    assert G[4, 4] == pytest.approx(1 / (2 * np.pi * 1.44))
    for sigma in np.arange(0.8, 4.001, 0.05):
        G = kernels.gaussian(sigma)
        assert G.shape[0] == 2 * int(4 * sigma + 0.5) + 1
        assert abs(G.sum() - 1) < 2e-4, sigma
    # scipy's gaussian_filter normalises the same samples: G ⋆ I = ΣG · gaussian_filter(I).
    I = digit_image().numpy()  # noqa: E741
    G = kernels.gaussian(1.5)
    np.testing.assert_allclose(ndimage.correlate(I, G, mode="mirror"),
                               G.sum() * ndimage.gaussian_filter(I, 1.5, mode="mirror"),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("boundary", ["mirror", "nearest", "wrap", "constant"])
@pytest.mark.parametrize("name", TABLE)
def test_correlate_matches_scipy(name, boundary):
    I = digit_image()  # noqa: E741
    k = kernels.kernel(name, sigma=1.3, box_size=5)
    ours = kernels.correlate(I, torch.from_numpy(k), boundary).numpy()
    np.testing.assert_allclose(ours, ndimage.correlate(I.numpy(), k, mode=boundary, cval=0.0),
                               rtol=0, atol=1e-12)
    ours32 = kernels.correlate(I.float(), torch.from_numpy(k), boundary).numpy()
    np.testing.assert_allclose(ours32, ndimage.correlate(I.numpy(), k, mode=boundary),
                               rtol=0, atol=1e-5 * max(1, np.abs(k).sum()))


@pytest.mark.parametrize("name", ["sobel_x", "laplacian", "gaussian", "box"])
def test_convolve_matches_scipy_for_odd_kernels(name):
    I = digit_image()  # noqa: E741
    k = kernels.kernel(name, sigma=1.0, box_size=3)
    ours = kernels.convolve(I, torch.from_numpy(k), "wrap").numpy()
    np.testing.assert_allclose(ours, ndimage.convolve(I.numpy(), k, mode="wrap"),
                               rtol=0, atol=1e-12)
    # Sobel is antisymmetric: convolution is minus the correlation.
    if name == "sobel_x":
        np.testing.assert_allclose(ours, -ndimage.correlate(I.numpy(), k, mode="wrap"),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", TABLE)
def test_convolution_theorem_conventions(name):
    """F[k ⋆ I] = F[I]·conj(F[k̃]) for a correlation, F[k * I] = F[I]·F[k̃] for a convolution."""
    I = digit_image()  # noqa: E741
    k = kernels.kernel(name, sigma=1.1, box_size=3)
    K = np.fft.fft2(kernels.embed(k, 64))
    F_I = np.fft.fft2(I.numpy())
    corr = np.fft.fft2(kernels.correlate(I, torch.from_numpy(k), "wrap").numpy())
    conv = np.fft.fft2(kernels.convolve(I, torch.from_numpy(k), "wrap").numpy())
    scale = np.abs(F_I * K).max()
    assert np.abs(corr - F_I * np.conj(K)).max() / scale < 1e-12
    assert np.abs(conv - F_I * K).max() / scale < 1e-12
    symmetric = np.allclose(k, k[::-1, ::-1]) and k.shape[0] % 2 and k.shape[1] % 2
    assert (np.abs(corr - F_I * K).max() / scale < 1e-12) == bool(symmetric)


def test_embed_moves_the_origin_to_zero():
    k = np.arange(9.0).reshape(3, 3)
    e = kernels.embed(k, 8)
    assert e[0, 0] == 4 and e[7, 7] == 0 and e[1, 1] == 8 and e[0, 1] == 5 and e[7, 0] == 1
    d = kernels.embed(kernels.DIFF_X, 8)  # origin at index 1: −1 sits at offset −1
    assert d[0, 0] == 1 and d[0, 7] == -1 and d.sum() == 0
    with pytest.raises(ValueError, match="does not fit"):
        kernels.embed(np.ones((9, 9)), 8)


def test_parse_kernel():
    np.testing.assert_array_equal(kernels.parse_kernel("0 -1 0; -1 5 -1; 0 -1 0"),
                                  [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(kernels.parse_kernel("1,2,3,4,5,6,7,8,9"),
                                  np.arange(1, 10).reshape(3, 3))
    assert kernels.parse_kernel(" ".join(["0.04"] * 25)).shape == (5, 5)
    assert kernels.parse_kernel("1e-2 .5 -3. 0 0 0 0 0 +1")[0, 1] == 0.5
    for text, message in [("1 2 3", "needs 9"), ("1 2 3 4; 5 6 7 8 9", "rows must be 3 rows"),
                          ("1 2 3 4 5 6 7 8 1e3", r"lie in \[−100, 100\]"),
                          ("1 2 3 4 5 6 7 8 --9", "plain numbers"),
                          ("1 2 3 4 5 6 7 8 1e", "plain numbers")]:
        with pytest.raises(ValueError, match=message):
            kernels.parse_kernel(text)


def test_signed_display():
    z = np.array([[-2.0, 0.0, 1.0]])
    levels, m = kernels.signed_to_display(z)
    assert m == 2.0 and levels.dtype == np.uint8
    assert levels.tolist() == [[0, 128, 191]]
    assert kernels.signed_ticks(2.0) == ["-2", "0", "2"]
    assert kernels.signed_to_display(np.zeros((2, 2)))[0].tolist() == [[128, 128], [128, 128]]


def test_float32_convolutions_ask_cudnn_for_ieee_float32(monkeypatch):
    """On a GPU, cuDNN's default TF32 would miss the 1e-5 float32 check; the context turns it
    off for the convolution only and restores the flags after."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cudnn = torch.backends.cudnn
    before = (cudnn.allow_tf32, cudnn.enabled, cudnn.benchmark, cudnn.deterministic)
    with kernels.ieee_float32():
        assert cudnn.allow_tf32 is False and cudnn.enabled == before[1]
    assert (cudnn.allow_tf32, cudnn.enabled, cudnn.benchmark, cudnn.deterministic) == before
