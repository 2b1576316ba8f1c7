r"""Image restoration math for :mod:`engine.experiments.deblur` (cheat sheet 2.2).

Per ERRATA.md (G-2.1-1, A-2.2-5, E-2.2-6), with :math:`\mathcal F` the 2-D DFT of an N×N
image and every convolution circular (periodic), so the convolution theorem is exact:

* degradation first: :math:`J = h * I + n`, :math:`n \overset{iid}{\sim} \mathcal N(0,\sigma^2)`,
  i.e. :math:`\mathcal F[J] = \mathcal F[h]\,\mathcal F[I] + \mathcal F[n]`;
* the inverse filter :math:`\mathcal F[\tilde h] = 1/\mathcal F[h]`, so
  :math:`\tilde h * J = I` without noise wherever :math:`\mathcal F[h] \ne 0`;
* the regularised (Tikhonov/Wiener) inverse, *with* the conjugate (E-2.2-6):

  .. math:: \mathcal F[\tilde h] = \frac{\overline{\mathcal F[h]}}{|\mathcal F[h]|^2 + \varepsilon},

  ε the noise-to-signal power ratio for the Wiener filter;
* Richardson–Lucy (Richardson 1972, Lucy 1974), the multiplicative EM update of the Poisson
  likelihood: :math:`u \leftarrow u\cdot\big(h \star \frac{J}{h * u}\big)`, where
  :math:`h\star` is correlation (convolution with the flipped kernel, :math:`\overline{\mathcal
  F[h]}` in Fourier space);
* the motion-blur kernel :math:`h(x, y) = \frac1{2l}[\theta(x+l) - \theta(x-l)]\,\delta(y)`,
  rotated by an angle, whose transform along the motion is :math:`\mathrm{sinc}(2lu)`.

Reference: Gonzalez & Woods, *Digital Image Processing*, §5.5–5.8. Images are ``(..., N, N)``
tensors; transfer functions are half-planes from :func:`torch.fft.rfft2`, ``(..., N, N//2+1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import erfc
from torch import nn

DISK_SUPERSAMPLING = 16  # sub-pixels per side when the defocus disk is area-sampled
GAUSSIAN_RADIUS = 4.0  # the Gaussian kernel is cut at ⌈4σ⌉ (mass outside < 1e-4)
RL_FLOOR = 1e-12  # h * u is floored here before J / (h * u) (skimage adds the same 1e-12)
H_FLOOR = 1e-8  # |F[h]| below this counts as a zero of the transfer function (H(0) = 1)


# ----------------------------------------------------------------------------------------------
# Kernels (numpy, float64), each sampled from its continuous PSF on the pixel grid.


@dataclass(frozen=True)
class PSF:
    """A point-spread function sampled on a (k, k) grid, k odd, centre at (k//2, k//2).

    ``h`` is normalised to sum 1; ``mass`` is the sampled mass before that normalisation,
    which should equal the continuous PSF's ``expected`` mass 1 within ``tolerance``; the
    gap measures how well the kernel was sampled (cut too early, sampled off its support).
    """

    h: np.ndarray
    mass: float
    expected: float
    tolerance: float
    how: str


def motion_lengths(length: float, angle: float) -> np.ndarray:
    r"""The length of the segment :math:`\{t\,d : |t| \le l\}`, :math:`d = (\cos a, \sin a)`,
    that lies in each pixel square :math:`[j-\frac12, j+\frac12]\times[i-\frac12, i+\frac12]`.

    ``length`` is the blur length 2l in pixels, ``angle`` a in degrees counter-clockwise on
    screen (rows grow downwards, so d = (cos a, −sin a) in (column, row)). Each pixel gets the
    exact line integral of δ(y) over its square (Liang–Barsky clipping), so the lengths add up
    to 2l whatever the angle. Returns a (k, k) array, k = 2⌈l⌉ + 3.
    """
    l = length / 2  # noqa: E741 (the sheet's symbol)
    R = math.ceil(l) + 1
    a = math.radians(angle)
    d = np.array([math.cos(a), -math.sin(a)])  # (x, y) = (column, row)
    d[np.abs(d) < 1e-12] = 0.0  # cos 90° is 6e-17, not 0: keep the axis cases exact
    p0, delta = -l * d, 2 * l * d  # the segment p0 + t·delta, t ∈ [0, 1]
    centres = np.arange(-R, R + 1, dtype=np.float64)

    def slab(p: float, v: float) -> tuple[np.ndarray, np.ndarray]:
        """t-interval of the segment inside [c − ½, c + ½] along one axis, per centre c."""
        if v == 0.0:
            inside = np.abs(p - centres) < 0.5
            return np.where(inside, -np.inf, np.inf), np.where(inside, np.inf, -np.inf)
        t1, t2 = (centres - 0.5 - p) / v, (centres + 0.5 - p) / v
        return np.minimum(t1, t2), np.maximum(t1, t2)

    lo_x, hi_x = slab(p0[0], delta[0])  # (k,) per column
    lo_y, hi_y = slab(p0[1], delta[1])  # (k,) per row
    lo = np.maximum(np.maximum(lo_y[:, None], lo_x[None, :]), 0.0)  # (k, k) [row, column]
    hi = np.minimum(np.minimum(hi_y[:, None], hi_x[None, :]), 1.0)
    return np.clip(hi - lo, 0.0, None) * 2 * l


def motion_psf(length: float, angle: float) -> PSF:
    r"""The motion blur :math:`\frac1{2l}[\theta(x+l) - \theta(x-l)]\delta(y)`, rotated by
    ``angle``: each pixel's share of the segment, over 2l (mass 1 by construction of the
    clipping, to rounding)."""
    lengths = motion_lengths(length, angle)
    mass = float(lengths.sum() / length)
    return PSF(lengths / lengths.sum(), mass, 1.0, 1e-9,
               f"segment of length 2l = {length:g} px at {angle:g}°, clipped to each pixel")


def gaussian_theta(sigma: float, terms: int = 8) -> float:
    r"""Poisson summation: :math:`\sum_{n\in\mathbb Z} G_\sigma(n) = 1 + 2\sum_{k\ge1}
    e^{-2\pi^2\sigma^2k^2}` for the unit-mass 1-D Gaussian, squared for the 2-D one."""
    k = np.arange(1, terms + 1)
    return float((1 + 2 * np.exp(-2 * math.pi**2 * sigma**2 * k**2).sum()) ** 2)


def gaussian_psf(sigma: float) -> PSF:
    r""":math:`G_\sigma = \frac1{2\pi\sigma^2}e^{-(x^2+y^2)/2\sigma^2}` at pixel centres,
    cut at radius ⌈4σ⌉. Its sampled mass is the Poisson sum :func:`gaussian_theta` less the
    cut tails, at most :math:`2\,\mathrm{erfc}(R/\sigma\sqrt2)` of it."""
    R = max(1, math.ceil(GAUSSIAN_RADIUS * sigma))
    x = np.arange(-R, R + 1, dtype=np.float64)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2)) / (2 * math.pi * sigma**2)
    theta = gaussian_theta(sigma)
    tolerance = 2 * theta * float(erfc(R / (sigma * math.sqrt(2)))) + 1e-12
    return PSF(g / g.sum(), float(g.sum()), theta, tolerance,
               f"G_σ, σ = {sigma:g} px, at pixel centres within radius {R}")


def disk_psf(radius: float, supersampling: int = DISK_SUPERSAMPLING) -> PSF:
    r"""Defocus: the uniform disk :math:`\frac1{\pi r^2}[x^2+y^2 \le r^2]`, each pixel weighted by
    the share of its area inside (``supersampling``² sub-pixels). The sub-pixels the circle
    cuts lie within :math:`\sqrt2/s` of it, so the sampled area is within
    :math:`2\sqrt2\pi r/s` of :math:`\pi r^2`."""
    R = math.ceil(radius)
    s = supersampling
    sub = (np.arange(s) + 0.5) / s - 0.5  # sub-pixel centres within a pixel
    x = (np.arange(-R, R + 1)[:, None] + sub[None, :]).ravel()  # ((2R+1)·s,)
    inside = (x[:, None] ** 2 + x[None, :] ** 2 <= radius**2).astype(np.float64)
    k = 2 * R + 1
    area = inside.reshape(k, s, k, s).sum(axis=(1, 3)) / s**2  # (k, k) area inside per pixel
    disk_area = math.pi * radius**2
    return PSF(area / area.sum(), float(area.sum() / disk_area), 1.0,
               2 * math.sqrt(2) * math.pi * radius / s / disk_area,
               f"disk of radius {radius:g} px, area-sampled with {s}×{s} sub-pixels")


def motion_transform_quadrature(l: float, u: np.ndarray,  # noqa: E741 (the sheet's symbol)
                                cells: int = 20_000) -> tuple[float, np.ndarray]:
    r"""Midpoint-rule quadrature of the 1-D motion kernel :math:`h(x) = \frac1{2l}[\theta(x+l)
    - \theta(x-l)]` on :math:`[-2l, 2l]`: :math:`\int h\,dx` and :math:`|\mathcal F h|(u) =
    |\int h(x)e^{-i2\pi ux}dx|`, whose closed form is :math:`|\mathrm{sinc}(2lu)|` (CHECKS.md
    2.2-g)."""
    dx = 4 * l / cells
    x = -2 * l + (np.arange(cells) + 0.5) * dx
    h = np.where(np.abs(x) < l, 1 / (2 * l), 0.0)
    integral = float(h.sum() * dx)
    transform = np.abs(np.exp(-2j * math.pi * np.outer(u, x)) @ h * dx)
    return integral, transform


# ----------------------------------------------------------------------------------------------
# The circular degradation model and the linear inverses (torch).


def circular_psf(h: torch.Tensor, shape: tuple[int, int], shift: int = 0) -> torch.Tensor:
    """The (k, k) kernel h on an N×M periodic grid with its centre at pixel (0, 0), moved
    ``shift`` pixels along x (an off-centre PSF; the grid wraps around, as the model)."""
    k, c = h.shape[-1], h.shape[-1] // 2
    offsets = torch.arange(k, device=h.device) - c
    padded = h.new_zeros(shape)
    padded[(offsets % shape[0])[:, None], ((offsets + shift) % shape[1])[None, :]] = h
    return padded


def transfer_function(h: torch.Tensor, shape: tuple[int, int], shift: int = 0) -> torch.Tensor:
    r""":math:`\mathcal F[h]` on the rfft half-plane, (N, M//2+1) complex."""
    return torch.fft.rfft2(circular_psf(h, shape, shift))


def convolve(x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    r"""Circular :math:`h * x = \mathcal F^{-1}[\mathcal F[h]\,\mathcal F[x]]`; x (..., N, M)."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * H, s=x.shape[-2:])


def correlate(x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    r"""Circular :math:`h \star x` (convolution with the flipped kernel): :math:`\overline{\mathcal
    F[h]}\,\mathcal F[x]`."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * H.conj(), s=x.shape[-2:])


def degrade(I: torch.Tensor, H: torch.Tensor, sigma: float,  # noqa: E741 (the sheet's symbol)
            z: torch.Tensor) -> torch.Tensor:
    r"""The degraded image :math:`J = h * I + n`, :math:`n = \sigma z`, z a standard normal draw
    of I's shape (the caller draws it, so the same z can be scaled to other σ)."""
    return convolve(I, H) + sigma * z


def naive_inverse(J: torch.Tensor, H: torch.Tensor, floor: float = H_FLOOR) -> torch.Tensor:
    r""":math:`\mathcal F^{-1}[\mathcal F[J]/\mathcal F[h]]`; where :math:`|\mathcal F[h]| <`
    ``floor`` (exact zeros, rounding) its modulus is raised to ``floor``, phase kept."""
    magnitude = H.abs()
    phase = torch.where(magnitude > 0, H / magnitude.clamp_min(1e-300), torch.ones_like(H))
    H_safe = torch.where(magnitude < floor, floor * phase, H)
    return torch.fft.irfft2(torch.fft.rfft2(J) / H_safe, s=J.shape[-2:])


def regularised_filter(H: torch.Tensor, epsilon: float | torch.Tensor, conjugate: bool = True,
                       floor: float = H_FLOOR) -> torch.Tensor:
    r""":math:`\overline{\mathcal F[h]}/(|\mathcal F[h]|^2 + \varepsilon)`; ``conjugate=False``
    gives the sheet's misprint :math:`\mathcal F[h]/(|\mathcal F[h]|^2 + \varepsilon)`.

    ε is a number, a per-frequency tensor like H (the Wiener filter's noise-to-signal ratio),
    or (E, 1, 1) for E filters at once. The denominator is kept above ``floor``², which only
    matters for ε = 0 at zeros of H (no noise: the naive inverse, guarded the same way).
    """
    # complex × real, then a lazy conjugate: several times faster on the CPU than dividing a
    # (conjugated) complex tensor by a real one.
    gain = (H.real**2 + H.imag**2 + epsilon).clamp_min(floor**2).reciprocal()
    W = H * gain
    return W.conj() if conjugate else W


def regularised_inverse(J: torch.Tensor, H: torch.Tensor, epsilon: float | torch.Tensor,
                        conjugate: bool = True) -> torch.Tensor:
    r""":math:`\tilde h * J` for the regularised inverse (E-2.2-6), see
    :func:`regularised_filter`."""
    return torch.fft.irfft2(torch.fft.rfft2(J) * regularised_filter(H, epsilon, conjugate),
                            s=J.shape[-2:])


def regularised_sweep(J: torch.Tensor, H: torch.Tensor, epsilons: Iterable[float],
                      floor: float = H_FLOOR) -> Iterator[torch.Tensor]:
    r"""The regularised inverse of J for each ε in turn, sharing :math:`\overline{\mathcal
    F[h]}\,\mathcal F[J]` and :math:`|\mathcal F[h]|^2`: one inverse FFT per ε. (One batched
    call over all ε is slower on the CPU: its arrays fall out of cache.)"""
    numerator = H.conj() * torch.fft.rfft2(J)
    power = H.real**2 + H.imag**2
    for epsilon in epsilons:
        gain = (power + epsilon).clamp_min(floor**2).reciprocal()
        yield torch.fft.irfft2(numerator * gain, s=J.shape[-2:])


def wiener_nsr(I: torch.Tensor, sigma: float) -> torch.Tensor:  # noqa: E741
    r"""The Wiener filter's per-frequency noise-to-signal power ratio
    :math:`\varepsilon(u) = \mathbb E|\mathcal F[n](u)|^2/|\mathcal F[I](u)|^2 =
    NM\sigma^2/|\mathcal F[I](u)|^2`, from the *clean* image's spectrum (an oracle): with it the
    filter is the MSE-optimal linear restoration (in expectation over the noise)."""
    N, M = I.shape[-2:]
    power = torch.fft.rfft2(I).abs() ** 2
    return N * M * sigma**2 / power.clamp_min(torch.finfo(power.dtype).tiny)


def wiener_epsilon(I: torch.Tensor, sigma: float) -> float:  # noqa: E741
    r"""The Wiener choice of a constant ε: noise-to-signal power ratio :math:`\sigma^2 /
    \overline{I^2}`, the mean power of the *clean* image (an oracle; per frequency it is
    :math:`N^2\sigma^2/\mathrm{mean}_u|\mathcal F[I](u)|^2` by Parseval)."""
    return sigma**2 / float(torch.mean(I.double() ** 2))


def richardson_lucy(J: torch.Tensor, H: torch.Tensor, u0: torch.Tensor | None = None
                    ) -> Iterator[torch.Tensor]:
    r"""Richardson–Lucy iterates :math:`u_{k+1} = u_k\cdot\big(h\star\frac{J}{h*u_k}\big)`,
    forever (the caller stops). J must be non-negative; u0 positive, by default the flat image
    with J's flux (early iterates are then smooth, which keeps noise down). For a kernel of
    unit sum every iterate has the flux of J: :math:`\sum_x u_{k+1} = \sum_y J(y)`."""
    u = torch.full_like(J, float(J.mean())) if u0 is None else u0.clone()
    H_conj = H.conj().resolve_conj()  # h⋆ in Fourier space, materialised once
    shape = J.shape[-2:]
    while True:
        blurred = torch.fft.irfft2(torch.fft.rfft2(u) * H, s=shape)  # h * u
        ratio = J / blurred.clamp_min_(RL_FLOOR)
        u = u * torch.fft.irfft2(torch.fft.rfft2(ratio) * H_conj, s=shape)  # u·(h ⋆ ratio)
        yield u


def poisson_log_likelihood(J: torch.Tensor, u: torch.Tensor, H: torch.Tensor) -> float:
    r""":math:`\sum_y J\log(h*u) - h*u` (up to a constant): the Poisson log-likelihood of u
    given J, which each Richardson–Lucy step, an EM step, never decreases."""
    Hu = convolve(u, H).clamp_min(RL_FLOOR)
    return float(torch.sum(torch.xlogy(J, Hu) - Hu))


# ----------------------------------------------------------------------------------------------
# The learned restoration: a small residual CNN on top of the Wiener estimate.


class RestorationCNN(nn.Module):
    """x ↦ x + f(x), f a few 3×3 convolutions with ReLUs; the last layer starts at zero, so
    the untrained net is the identity on its input (the Wiener restoration)."""

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        channels = [1] + [width] * (depth - 1) + [1]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate")
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W)
        h = x
        for conv in self.convs[:-1]:
            h = F.relu(conv(h))
        return x + self.convs[-1](h)


def make_cnn(generator: torch.Generator, device: torch.device, width: int = 16,
             depth: int = 4) -> RestorationCNN:
    """A fresh :class:`RestorationCNN` initialised from ``generator`` (PyTorch's default
    U(±1/√fan_in) ranges), the last layer zero: same seed, same net."""
    net = RestorationCNN(width, depth).to(device)
    with torch.no_grad():
        for conv in net.convs:
            bound = 1.0 / math.sqrt(conv.in_channels * 9)
            conv.weight.uniform_(-bound, bound, generator=generator)
            conv.bias.uniform_(-bound, bound, generator=generator)
        net.convs[-1].weight.zero_()
        net.convs[-1].bias.zero_()
    return net
