"""Restoration math (CHECKS.md 2.1-a, 2.2-f, 2.2-g) against scipy, scikit-image and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.restoration import richardson_lucy, wiener
from sklearn.datasets import load_digits

from engine.experiments import restoration as R
from engine.images import load_image, psnr

N = 64


def digit_image() -> torch.Tensor:
    """CHECKS.md's test image: the first load_digits digit, bilinearly upsampled to 32×32 and
    zero-padded to 64×64, in [0, 1] (float64)."""
    digit = torch.tensor(load_digits().images[0] / 16.0)[None, None]
    up = F.interpolate(digit, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    return F.pad(up, (16, 16, 16, 16))


def normal(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rolled_box() -> tuple[torch.Tensor, torch.Tensor]:
    """The horizontal box of width 9 (the motion kernel at 0°), rolled by 3: complex H."""
    h = torch.tensor(R.motion_psf(9, 0).h)
    return h, R.transfer_function(h, (N, N), shift=3)


# ----------------------------------------------------------------------------------------------
# CHECKS.md


def test_2_2_f_inverse_and_wiener_on_an_off_centre_box_blur():
    clean = digit_image()
    h, H = rolled_box()
    assert float(H.imag.abs().max()) > 0.1  # off-centre: H is complex
    exact = R.degrade(clean, H, 0.0, torch.zeros_like(clean))
    assert psnr(R.naive_inverse(exact, H), clean) > 60
    J = R.degrade(clean, H, 0.01, normal(clean.shape, 2))
    naive = psnr(R.naive_inverse(J, H), clean)
    wiener_conj = psnr(R.regularised_inverse(J, H, 1e-2), clean)
    sheet = psnr(R.regularised_inverse(J, H, 1e-2, conjugate=False), clean)
    assert wiener_conj >= naive + 10 and wiener_conj >= sheet + 3
    # The numbers CHECKS.md observed (unclipped PSNR): 27.8 vs 12.9 vs 14.4.
    assert (wiener_conj, naive, sheet) == pytest.approx((27.8, 12.9, 14.4), abs=0.05)


def test_2_2_g_motion_kernel_quadrature():
    for half in (1.0, 4.5, 7.5, 20.5):  # the sheet's l: h is 1/(2l) on [−l, l]
        u = np.array([0.0, 0.1, 0.25, 0.5, 0.8, 1.0, 1.7]) / half
        integral, transform = R.motion_transform_quadrature(half, u)
        assert abs(integral - 1) < 1e-4
        np.testing.assert_allclose(transform, np.abs(np.sinc(2 * half * u)), rtol=0, atol=1e-4)
        assert transform[3] < 1e-4  # |F h|(1/(2l)) = 0


def test_2_1_a_additive_gaussian_noise():
    clean, sigma = digit_image(), 0.05
    identity = torch.ones(N, N // 2 + 1, dtype=torch.complex128)
    noisy = R.degrade(clean, identity, sigma, normal(clean.shape, 0))
    n = (noisy - clean).numpy().ravel()
    se = sigma**2 * math.sqrt(2 / (n.size - 1))
    assert abs(n.var(ddof=1) - sigma**2) <= 4 * se
    assert abs(psnr(noisy, clean) - (-20 * math.log10(sigma))) <= 0.3


# ----------------------------------------------------------------------------------------------
# Kernels


def test_motion_kernel_is_the_box_along_the_axes_and_keeps_its_length():
    box = R.motion_psf(9, 0).h
    row = box[box.shape[0] // 2]
    np.testing.assert_allclose(row[row > 0], np.full(9, 1 / 9), atol=1e-15)
    assert box.sum() == pytest.approx(1, abs=1e-15) and (box > 0).sum() == 9
    np.testing.assert_allclose(R.motion_psf(9, 90).h, box.T, atol=1e-15)
    for angle in (0, 17, 30, 45, 90, 137, 180):
        psf = R.motion_psf(15, angle)
        assert abs(psf.mass - 1) < 1e-12
        np.testing.assert_allclose(psf.h, psf.h[::-1, ::-1], atol=1e-15)  # point-symmetric
        # The weighted direction of the kernel's second moment is the motion direction.
        y, x = np.mgrid[:psf.h.shape[0], :psf.h.shape[1]] - psf.h.shape[0] // 2
        cov = np.array([[np.sum(psf.h * x * x), np.sum(psf.h * x * -y)],
                        [np.sum(psf.h * x * -y), np.sum(psf.h * y * y)]])
        axis = np.linalg.eigh(cov)[1][:, -1]
        assert abs(abs(axis @ [math.cos(math.radians(angle)), math.sin(math.radians(angle))])
                   - 1) < 1e-3


def test_horizontal_motion_transfer_function_is_the_dirichlet_kernel():
    L = 9  # an odd box on the pixel grid: |H(u, 0)| = |sin(πLu) / (L sin(πu))|
    H = torch.fft.fft2(R.circular_psf(torch.tensor(R.motion_psf(L, 0).h), (N, N))).numpy()
    u = np.fft.fftfreq(N)[1:]
    np.testing.assert_allclose(np.abs(H[0, 1:]), np.abs(np.sin(np.pi * L * u)
                                                        / (L * np.sin(np.pi * u))), atol=1e-12)
    np.testing.assert_allclose(np.abs(H[1:, 0]), 1.0, atol=1e-12)  # nothing blurred along y


def test_gaussian_and_disk_kernels_keep_their_mass():
    for sigma in (0.5, 1.2, 3.0, 6.0):
        psf = R.gaussian_psf(sigma)
        assert abs(psf.mass - psf.expected) <= psf.tolerance
        x = np.arange(-50, 51)
        untruncated = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2)).sum()
        assert untruncated / (2 * math.pi * sigma**2) == pytest.approx(psf.expected, abs=1e-12)
    assert R.gaussian_psf(1.2).mass == pytest.approx(1, abs=2e-3)  # CHECKS.md 2.2-b
    for radius in (1.0, 2.5, 4.0, 15.0):
        psf = R.disk_psf(radius)
        assert abs(psf.mass - 1) <= psf.tolerance
        assert abs(psf.mass - 1) < 0.02  # the bound is loose; the sampling is much better


# ----------------------------------------------------------------------------------------------
# The circular model and the inverses


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_convolution_theorem_against_direct_circular_convolution(dtype, tol):
    rng = np.random.default_rng(0)
    clean = rng.random((N, 48))
    h = rng.random((7, 7))
    h /= h.sum()  # not symmetric: catches a flipped kernel
    for shift in (0, 3):
        H = R.transfer_function(torch.tensor(h, dtype=dtype), (N, 48), shift)
        fft = R.convolve(torch.tensor(clean, dtype=dtype), H).numpy()
        direct = np.roll(ndimage.convolve(clean, h, mode="wrap"), shift, axis=1)
        np.testing.assert_allclose(fft, direct, rtol=0, atol=tol)
        corr = R.correlate(torch.tensor(clean, dtype=dtype), H).numpy()
        direct_corr = np.roll(ndimage.correlate(clean, h, mode="wrap"), -shift, axis=1)
        np.testing.assert_allclose(corr, direct_corr, rtol=0, atol=tol)


def test_regularised_inverse_matches_skimage_wiener_with_identity_regulariser():
    clean = load_image("camera", 128, dtype=torch.float64)
    psf = R.motion_psf(15, 30).h
    H = R.transfer_function(torch.tensor(psf), (128, 128))
    J = R.degrade(clean, H, 0.01, normal(clean.shape, 1))
    for epsilon in (1e-4, 1e-2, 1.0):
        ours = R.regularised_inverse(J, H, epsilon).numpy()
        theirs = wiener(J.numpy(), psf, epsilon, reg=np.ones((1, 1)), clip=False)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


def test_without_noise_the_regularised_inverse_recovers_the_image_as_epsilon_vanishes():
    clean = digit_image()
    _, H = rolled_box()
    J = R.degrade(clean, H, 0.0, torch.zeros_like(clean))
    scores = [psnr(R.regularised_inverse(J, H, eps), clean) for eps in (1e-2, 1e-4, 1e-6, 1e-8)]
    assert all(b > a for a, b in zip(scores, scores[1:], strict=False))
    assert scores[-1] > 60
    # Without the conjugate the limit is 1/conj(F[h]): the picture moved by 6 pixels.
    assert psnr(R.regularised_inverse(J, H, 1e-8, conjugate=False), clean) < 20


def test_with_noise_the_regularised_inverse_beats_the_naive_one_by_10_db():
    clean = load_image("camera", 128, dtype=torch.float64)
    H = R.transfer_function(torch.tensor(R.motion_psf(15, 30).h), (128, 128))
    J = R.degrade(clean, H, 0.01, normal(clean.shape, 0))
    naive = psnr(R.naive_inverse(J, H).clamp(0, 1), clean)
    regularised = psnr(R.regularised_inverse(J, H, 1e-2).clamp(0, 1), clean)
    oracle = R.wiener_nsr(clean, 0.01)
    wiener_oracle = psnr(R.regularised_inverse(J, H, oracle).clamp(0, 1), clean)
    assert regularised >= naive + 10  # observed 24.3 vs 5.5 dB
    assert wiener_oracle > regularised  # the per-frequency ε is the optimal linear filter


def test_naive_inverse_guards_zeros_of_the_transfer_function():
    # Length 8 on the pixel grid is a box of 8 smoothed by [½, ½]: F[h] vanishes at u = k/8.
    clean = load_image("camera", N, dtype=torch.float64)
    H = R.transfer_function(torch.tensor(R.motion_psf(8, 0).h), (N, N))
    zeros = H.abs() < R.H_FLOOR
    assert int(zeros.sum()) == 4 * N and bool(zeros[:, 8].all())  # columns u = 8, 16, 24, 32
    x = R.naive_inverse(R.convolve(clean, H), H)
    assert torch.isfinite(x).all()
    error = (torch.fft.rfft2(x) - torch.fft.rfft2(clean)).abs()
    assert float(error[~zeros].max()) < 1e-9 * float(torch.fft.rfft2(clean).abs().max())


# ----------------------------------------------------------------------------------------------
# Richardson–Lucy


def test_richardson_lucy_matches_skimage_on_a_picture_with_a_zero_border():
    # skimage convolves with zero padding ('same'), this engine circularly: on a picture whose
    # blur stays inside a zero border the two models, hence the iterates, agree.
    clean = digit_image()
    psf = R.gaussian_psf(1.5).h
    J = ndimage.convolve(clean.numpy(), psf, mode="constant")
    H = R.transfer_function(torch.tensor(psf), (N, N))
    iterates = R.richardson_lucy(torch.tensor(J), H, u0=torch.full((N, N), 0.5,
                                                                   dtype=torch.float64))
    for _ in range(15):
        ours = next(iterates)
    theirs = richardson_lucy(J, psf, num_iter=15, clip=False)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-9)


def test_richardson_lucy_flux_sign_likelihood_and_early_improvement():
    clean = load_image("camera", 128, dtype=torch.float64)
    H = R.transfer_function(torch.tensor(R.gaussian_psf(2.0).h), (128, 128))
    J = R.degrade(clean, H, 0.0, torch.zeros_like(clean)).clamp_min(0)
    flux = float(J.sum())
    iterates = R.richardson_lucy(J, H)
    scores, likelihood = [psnr(J, clean)], []
    for _ in range(10):
        u = next(iterates)
        assert abs(float(u.sum()) - flux) <= 1e-12 * flux
        assert float(u.min()) >= -1e-12
        scores.append(psnr(u, clean))
        likelihood.append(R.poisson_log_likelihood(J, u, H))
    assert all(b > a for a, b in zip(scores[1:], scores[2:], strict=False))  # noise-free: rises
    assert all(b >= a for a, b in zip(likelihood, likelihood[1:], strict=False))
    assert scores[-1] > scores[0] + 1.0  # 10 iterations beat the blurred picture: 23.5 → 25.0 dB


def test_cnn_starts_as_the_identity_and_is_seeded():
    a = R.make_cnn(torch.Generator().manual_seed(3), torch.device("cpu"))
    b = R.make_cnn(torch.Generator().manual_seed(3), torch.device("cpu"))
    x = torch.rand(2, 1, 20, 20)
    torch.testing.assert_close(a(x), x)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
