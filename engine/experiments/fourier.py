r"""2.2 Fourier transform: spectra, the convolution theorem, Dirac, sampling and reconstruction.

The cheat sheet's Fourier items in their discrete form (N-point DFT
:math:`\mathcal F f[u] = \sum_{x=0}^{N-1} f[x]\,e^{-i2\pi ux/N}`, indices modulo N):

* Dirac: :math:`\mathcal F[\delta[x - x_0]](u) = e^{-i2\pi u x_0/N}`, and δ is the identity of
  convolution, :math:`\delta * f = f`;
* linearity :math:`\mathcal F[\alpha f_1 + \beta f_2] = \alpha F_1 + \beta F_2` and duality
  :math:`\mathcal F\mathcal F f[u] = N f[-u]` (in 2-D, :math:`N^2 f[-u, -v]`);
* the convolution theorem :math:`\mathcal F[f * g] = \mathcal F[f]\cdot\mathcal F[g]`
  (circular convolution);
* sampling :math:`f_s(x) = \sum_n f(x_n)\,\delta(x - x_n)`: a tone of frequency f sampled at
  rate :math:`f_s` is indistinguishable from one at the folded frequency
  :math:`f_a = |f - k f_s|`, :math:`k = \operatorname{round}(f/f_s)`, which is :math:`\le f_s/2`;
* reconstruction, corrected per ERRATA.md G-2.2-4: the **ideal** reconstruction of a signal
  band-limited below ½ and sampled at unit spacing is Shannon's
  :math:`f(x) = \sum_n f(n)\,\operatorname{sinc}(x - n)`,
  :math:`\operatorname{sinc}(x) = \frac{\sin \pi x}{\pi x}`; a Gaussian kernel
  :math:`\sum_n f(n)\,\frac{1}{\sqrt{2\pi}w} e^{-(x-n)^2/(2w^2)}` only approximates it.

Reference: Gonzalez & Woods, *Digital Image Processing*, ch. 4; Shannon, *Communication in
the presence of noise* (1949).

The run transforms the picture with ``torch.fft`` on ``ctx.device`` (float64) and checks each
property against ``numpy.fft`` or its closed form (CHECKS.md 2.2-c/d/e). The tone is sampled
for T = 10 s, with f and f_s rounded to 0.1 Hz, so it completes whole cycles in the window and
the rfft peak lands exactly on the bin of f_a (bins are 1/T = 0.1 Hz apart).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import plotly.graph_objects as go
import torch
from pydantic import Field, field_validator

from engine.core import (
    Check,
    ClickInput,
    Experiment,
    Formula,
    Frame,
    Params,
    RunContext,
    Section,
    extend,
    finish,
    relayout,
    restyle,
    status,
)
from engine.experiments import kernels
from engine.experiments.kernels import KernelName
from engine.images import gray_heatmap, image_axes, image_field, load_image, to_display

EXACT_TOL = 1e-12  # CHECKS.md 2.2-c, float64
ALIAS_TOL = 1e-9  # samples against the alias sine: arguments up to 2π·500·10 ≈ 3·10⁴ rad
SINC_BOUND = 2e-2  # CHECKS.md 2.2-e
N_DIRAC = 32
F_MAX = 500.0
FS_MIN = 10.0
T = 10  # seconds of sampling: bins 1/T = 0.1 Hz apart
DECI = 10  # f and f_s are whole multiples of 1/DECI Hz
PHASE = 0.5  # rad; non-zero, so tones folding to 0 or to f_s/2 do not sample to zeros
NU = (0.11, 0.27)  # CHECKS.md 2.2-e: cycles per sample, both below ½
AMPLITUDE = (1.0, 0.5)
SAMPLES = 200  # n = −200 … 200: 401 samples
X_MAX = 20.0
X_POINTS = 801
CHUNKS = 8
MAP_F, MAP_FS = 201, 125  # aliasing map resolution
STEPS = 6 + CHUNKS + 1
# Legends in rows under the x-axis title, with the room for them in the bottom margin.
LEGEND_BELOW = dict(legend=dict(orientation="h", x=0, y=-0.3, yanchor="top"),
                    margin=dict(b=130))


class FourierParams(Params):
    """The picture and kernel, the Dirac shift, the tone and its sampling, the Gaussian."""

    image: str = image_field("camera")
    size: int = Field(128, ge=64, le=256, description="The picture is resampled to size×size.")
    kernel: KernelName = Field("gaussian", description="The kernel g of the convolution "
                               "theorem F[f * g] = F[f]·F[g] (the filters page's table).")
    sigma: float = Field(2.0, ge=0.8, le=4.0, description="σ of the Gaussian kernel.")
    box_size: int = Field(5, ge=3, le=15, description="Side of the Box and High-pass kernels; "
                          "odd.")
    x0: int = Field(3, ge=0, le=N_DIRAC - 1, description=f"Shift of the Dirac δ[x − x0] in the "
                    f"{N_DIRAC}-point DFT.")
    f: float = Field(70.0, ge=0.1, le=F_MAX, description="Frequency of the sampled sine (Hz), "
                     "rounded to 0.1 Hz. Click the aliasing map to set f and f_s.")
    fs: float = Field(100.0, ge=FS_MIN, le=F_MAX, description="Sampling rate f_s (Hz), rounded "
                      "to 0.1 Hz; Nyquist frequency f_s/2.")
    width: float = Field(0.5, ge=0.2, le=2.0, description="Width w of the Gaussian "
                         "reconstruction kernel, in sample spacings.")

    @field_validator("box_size")
    @classmethod
    def _odd(cls, box_size: int) -> int:
        kernels.check_odd("box_size", box_size)
        return box_size

    @field_validator("f", "fs")
    @classmethod
    def _tenth_of_a_hertz(cls, value: float) -> float:
        return round(value * DECI) / DECI


# ----------------------------------------------------------------------------------------------
# Aliasing and reconstruction, in closed form.


def folded(f: float, fs: float) -> tuple[int, int, int]:
    """(F, S, R) in tenths of a hertz: the tone F, the rate S, and the signed alias
    R ≡ F (mod S) with |R| ≤ S/2, so the samples equal those of a tone at R and f_a = |R|."""
    F, S = round(f * DECI), round(fs * DECI)
    r = F % S
    return F, S, r if 2 * r <= S else r - S


def apparent(f: np.ndarray, fs: np.ndarray) -> np.ndarray:
    """f_a = |f − round(f/f_s) f_s| for arrays (the aliasing map)."""
    return np.abs(f - np.round(f / fs) * fs)


def band_limited(x: np.ndarray) -> np.ndarray:
    """The test signal: sines at 0.11 and 0.27 cycles per sample (CHECKS.md 2.2-e)."""
    return sum(a * np.sin(2 * np.pi * nu * x) for a, nu in zip(AMPLITUDE, NU, strict=True))


def sampling_window(fs: float, f_a: float) -> float:
    """Seconds shown of the tone: two periods of the alias, 20 to 80 samples."""
    shown = 40 if f_a == 0 else math.ceil(2 * fs / f_a)
    return min(max(shown, 20), 80) / fs


# ----------------------------------------------------------------------------------------------
# Figures.

FORMULAS = (
    Formula("DFT", r"\mathcal F f[u] = \sum_{x=0}^{N-1} f[x]\, e^{-i 2\pi u x/N}"),
    Formula("Dirac", r"\mathcal F[\delta[x - x_0]](u) = e^{-i 2\pi u x_0/N},\quad "
            r"\delta * f = f"),
    Formula("Linearity and duality",
            r"\mathcal F[\alpha f_1 + \beta f_2] = \alpha F_1 + \beta F_2,\quad "
            r"\mathcal F \mathcal F f[u] = N f[-u]"),
    Formula("Convolution theorem", r"\mathcal F[f * g] = \mathcal F[f] \cdot \mathcal F[g]"),
    Formula("Sampling and aliasing",
            r"f_s(x) = \sum_n f(x_n)\, \delta(x - x_n),\quad f_a = |f - k f_s|,\ "
            r"k = \operatorname{round}(f / f_s)"),
    Formula("Ideal reconstruction (Shannon)",
            r"f(x) = \sum_n f(n)\, \operatorname{sinc}(x - n),\quad "
            r"\operatorname{sinc}(x) = \frac{\sin \pi x}{\pi x}", erratum="G-2.2-4"),
)


def _line(name: str, color: str, dash: str = "solid", width: float = 2, **extra) -> go.Scatter:
    return go.Scatter(x=[], y=[], name=name, mode="lines",
                      line=dict(color=color, dash=dash, width=width), **extra)


def _markers(name: str, color: str, size: int = 7, **extra) -> go.Scatter:
    return go.Scatter(x=[], y=[], name=name, mode="markers",
                      marker=dict(color=color, size=size), **extra)


def figures(params: FourierParams) -> dict[str, go.Figure]:
    """Picture, spectrum, theorem, Dirac, aliasing (map, samples, rfft), reconstruction."""
    n = params.size
    label = kernels.LABELS[params.kernel]
    g = kernels.kernel(params.kernel, params.sigma, params.box_size)
    u = np.fft.fftshift(np.fft.fftfreq(n))
    spectrum_axes = dict(xaxis=dict(title="u (cycles/pixel)", constrain="domain"),
                         yaxis=dict(title="v (cycles/pixel)", scaleanchor="x",
                                    constrain="domain"))
    if kernels.is_signed(g):
        filtered = go.Figure(kernels.signed_heatmap("f * g"), layout=image_axes(
            title=f"f * g, g = {label}: signed, blue < 0 < red"))
    else:
        filtered = go.Figure(gray_heatmap(name="f * g"),
                             layout=image_axes(title=f"f * g, g = {label}"))

    # The aliasing map does not depend on the run: f_a over the whole (f, f_s) range.
    f_grid = np.linspace(0.0, F_MAX, MAP_F)
    fs_grid = np.linspace(FS_MIN, F_MAX, MAP_FS)
    ratio = apparent(f_grid[None, :], fs_grid[:, None]) / (fs_grid[:, None] / 2)
    _, _, R = folded(params.f, params.fs)
    alias_map = go.Figure(
        [go.Heatmap(z=np.rint(255 * ratio).astype(np.uint8), x=f_grid, y=fs_grid,
                    colorscale="Viridis", zmin=0, zmax=255,
                    colorbar=dict(title=dict(text="f_a / (f_s/2)", side="right"),
                                  tickvals=[0, 127.5, 255], ticktext=["0", "½", "1"], len=0.8),
                    hovertemplate="f %{x:.1f} Hz, f_s %{y:.1f} Hz<extra></extra>"),
         go.Scatter(x=[FS_MIN / 2, F_MAX / 2], y=[FS_MIN, F_MAX], mode="lines",
                    name="Nyquist f = f_s/2", line=dict(color="white", dash="dash")),
         go.Scatter(x=[params.f], y=[params.fs], mode="markers", name="this run",
                    marker=dict(color="#d62728", size=12, symbol="x",
                                line=dict(color="white", width=1)))],
        layout=dict(title=f"f_a = {abs(R) / DECI:g} Hz for f = {params.f:g} at f_s = "
                    f"{params.fs:g} (click: set f, f_s)",
                    xaxis=dict(title="signal frequency f (Hz)", range=[0, F_MAX]),
                    yaxis=dict(title="sampling rate f_s (Hz)", range=[FS_MIN, F_MAX]),
                    **LEGEND_BELOW),
    )
    return {
        "image": go.Figure(gray_heatmap(name="f"),
                           layout=image_axes(title=f"f: {params.image}, {n}×{n}")),
        "magnitude": go.Figure(
            go.Heatmap(z=[[0]], x=u, y=u, colorscale="Viridis", zmin=0, zmax=255,
                       colorbar=dict(title="log₁₀|F|", len=0.8),
                       hovertemplate="u %{x:.3f}, v %{y:.3f}<extra></extra>"),
            layout=dict(title="log₁₀|F[f]| (fftshifted: u = v = 0 in the centre)",
                        **spectrum_axes)),
        "phase": go.Figure(
            go.Heatmap(z=[[0]], x=u, y=u, colorscale="Phase", zmin=0, zmax=255,
                       colorbar=dict(title="arg F", tickvals=[0, 127.5, 255],
                                     ticktext=["−π", "0", "π"], len=0.8),
                       hovertemplate="u %{x:.3f}, v %{y:.3f}<extra></extra>"),
            layout=dict(title="Phase arg F[f] (fftshifted)", **spectrum_axes)),
        "filtered": filtered,
        "theorem": go.Figure(
            [_line("|F[f]|", "#bbbbbb", width=1),
             _markers("|F[f * g]| (conv2d, then FFT)", "#1f77b4", size=5),
             _line("|F[f]|·|F[g]|", "#ff7f0e", width=1.5),
             _line("|F[f * g] − F[f]·F[g]|", "#d62728", width=1)],
            layout=dict(title=f"Convolution theorem along v = 0, g = {label}",
                        xaxis=dict(title="u (cycles/pixel)"),
                        yaxis=dict(title="magnitude", type="log", exponentformat="e"),
                        **LEGEND_BELOW)),
        "dirac": go.Figure(
            [_line("cos(2πu x0/N)", "#1f77b4", width=1), _line("−sin(2πu x0/N)", "#ff7f0e",
                                                                width=1),
             _markers("Re F[δ[x − x0]]", "#1f77b4"), _markers("Im F[δ[x − x0]]", "#ff7f0e")],
            layout=dict(title=f"DFT of δ[x − {params.x0}] (N = {N_DIRAC}) = "
                        f"e^(−i2πu·{params.x0}/N)",
                        xaxis=dict(title="u"), yaxis=dict(title="value", range=[-1.15, 1.15]),
                        **LEGEND_BELOW)),
        "aliasing_map": alias_map,
        "sampling": go.Figure(
            [_line(f"sin(2π·{params.f:g}t + φ)", "#bbbbbb", width=1),
             _line("alias sin(2π·f_a t ± φ)", "#d62728", "dash"),
             _markers(f"samples at f_s = {params.fs:g} Hz", "#1f77b4")],
            layout=dict(title="The tone, its samples and the alias through them",
                        xaxis=dict(title="t (s)"), yaxis=dict(title="x(t)", range=[-1.2, 1.2]),
                        **LEGEND_BELOW)),
        "spectrum": go.Figure(
            [_line("|rfft| amplitude", "#1f77b4"),
             _line("predicted f_a", "#d62728", "dash"),
             _markers("true f (beyond f_s/2 it cannot be seen)", "#7f7f7f", size=10,
                      marker_symbol="diamond-open"),
             _line("Nyquist f_s/2", "#2ca02c", "dot")],
            layout=dict(title=f"Spectrum of {T} s of samples (bins {1 / T:g} Hz apart)",
                        xaxis=dict(title="frequency (Hz)"),
                        yaxis=dict(title="amplitude", range=[0, 1.15]),
                        **LEGEND_BELOW)),
        "reconstruction": go.Figure(
            [_line("f(x) (band-limited)", "#bbbbbb", width=4),
             _markers("samples f(n)", "#222222", size=5),
             _line("Σ f(n) sinc(x − n)", "#1f77b4", width=1.5),
             _line(f"Σ f(n) G_w(x − n), w = {params.width:g}", "#ff7f0e", "dash", width=1.5)],
            layout=dict(title=f"{2 * SAMPLES + 1} samples: sinc (ideal) against a Gaussian",
                        xaxis=dict(title="x (sample spacings)", range=[-X_MAX, X_MAX]),
                        yaxis=dict(title="f(x)"), **LEGEND_BELOW)),
        "reconstruction_error": go.Figure(
            [_line("|sinc reconstruction − f|", "#1f77b4"),
             _line("|Gaussian reconstruction − f|", "#ff7f0e")],
            layout=dict(title=f"Reconstruction error (sinc bound {SINC_BOUND:g})",
                        xaxis=dict(title="x (sample spacings)", range=[-X_MAX, X_MAX]),
                        yaxis=dict(title="|error|", type="log", exponentformat="e",
                                   range=[-6, 0.3]),
                        **LEGEND_BELOW)),
    }


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks for :func:`kernels.to_levels` of log₁₀ values, at whole decades."""
    decades = np.arange(math.ceil(lo), math.floor(hi) + 1)
    return ([float(v) for v in 255 * (decades - lo) / (hi - lo if hi > lo else 1.0)],
            [f"{d:g}" for d in decades])


# ----------------------------------------------------------------------------------------------
# The run.


def run(params: FourierParams, ctx: RunContext) -> Iterator[Frame]:
    """Spectrum, convolution theorem, Dirac, aliasing, then the reconstruction chunk by chunk."""
    n = params.size
    device = ctx.device
    f = load_image(params.image, n, ctx, dtype=torch.float64)  # (n, n) in [0, 1]
    Ff = torch.fft.fft2(f)  # (n, n) complex128
    yield restyle("image", [0], z=[to_display(f)])
    log_mag = torch.log10(torch.fft.fftshift(Ff.abs()).clamp_min(1e-12)).cpu().numpy()
    lo, hi = float(log_mag.min()), float(log_mag.max())
    tickvals, ticktext = log_ticks(lo, hi)
    yield restyle("magnitude", [0], z=[kernels.to_levels(log_mag, lo, hi)],
                  **{"colorbar.tickvals": [tickvals], "colorbar.ticktext": [ticktext]})
    phase = torch.fft.fftshift(torch.angle(Ff)).cpu().numpy()
    yield restyle("phase", [0], z=[kernels.to_levels(phase, -math.pi, math.pi)])
    yield status((1, STEPS), dc=float(Ff[0, 0].real))

    # (2) Convolution theorem: circular f * g by F.conv2d, against the product of the DFTs.
    g = kernels.kernel(params.kernel, params.sigma, params.box_size)
    fg = kernels.convolve(f, torch.from_numpy(g).to(device), "wrap")  # (n, n)
    fg_np = fg.cpu().numpy()
    if kernels.is_signed(g):
        z, m = kernels.signed_to_display(fg_np)
        yield restyle("filtered", [0], z=[z], **{"colorbar.ticktext": [kernels.signed_ticks(m)]})
    else:
        yield restyle("filtered", [0], z=[to_display(fg)])
    yield status((2, STEPS))
    F_fg = torch.fft.fft2(fg).cpu().numpy()
    G = np.fft.fft2(kernels.embed(g, n))
    F_f = np.fft.fft2(f.cpu().numpy())
    product = F_f * G
    half = n // 2 + 1
    u = np.arange(half) / n
    yield restyle("theorem", [0, 1, 2, 3], x=[u] * 4,
                  y=[np.abs(F_f[0, :half]), np.abs(F_fg[0, :half]), np.abs(product[0, :half]),
                     np.abs(F_fg[0, :half] - product[0, :half])])
    theorem_err = float(np.abs(F_fg - product).max() / np.abs(product).max())
    yield status((3, STEPS), convolution_theorem_error=theorem_err)
    if ctx.should_stop():
        return

    # (3) Dirac: the DFT of δ[x − x0] is a pure phase ramp.
    d = torch.zeros(N_DIRAC, dtype=torch.float64, device=device)
    d[params.x0] = 1.0
    D = torch.fft.fft(d).cpu().numpy()
    u_fine = np.linspace(0, N_DIRAC - 1, 20 * (N_DIRAC - 1) + 1)
    u_int = np.arange(N_DIRAC)
    yield restyle("dirac", [0, 1, 2, 3], x=[u_fine, u_fine, u_int, u_int],
                  y=[np.cos(2 * np.pi * u_fine * params.x0 / N_DIRAC),
                     -np.sin(2 * np.pi * u_fine * params.x0 / N_DIRAC), D.real, D.imag])
    yield status((4, STEPS))

    # (4) Sampling: T seconds of the tone at f_s, and the tone at the alias through them.
    F, S, R = folded(params.f, params.fs)
    f_hz, fs_hz, f_a = F / DECI, S / DECI, abs(R) / DECI
    t_n = torch.arange(S, dtype=torch.float64, device=device) / fs_hz  # N = f_s·T = S samples
    x_n = torch.sin(2 * math.pi * f_hz * t_n + PHASE).cpu().numpy()
    alias_n = np.sin(2 * np.pi * (R / DECI) * t_n.cpu().numpy() + PHASE)
    window = sampling_window(fs_hz, f_a)
    shown = int(round(window * fs_hz)) + 1
    t = np.linspace(0.0, window, min(20_000, max(500, math.ceil(40 * f_hz * window))))
    yield restyle("sampling", [0, 1, 2], x=[t, t, t_n[:shown].cpu().numpy()],
                  y=[np.sin(2 * np.pi * f_hz * t + PHASE),
                     np.sin(2 * np.pi * (R / DECI) * t + PHASE), x_n[:shown]])
    yield status((5, STEPS), f_a=f_a)

    X = torch.fft.rfft(torch.from_numpy(x_n).to(device)).abs().cpu().numpy()
    bins = np.arange(len(X)) / T  # Hz
    amplitude = X * 2 / S
    amplitude[0] /= 2
    if S % 2 == 0:
        amplitude[-1] /= 2
    peak = int(np.argmax(X))
    yield restyle("spectrum", [0, 1, 2, 3], x=[bins, [f_a, f_a], [f_hz], [fs_hz / 2] * 2],
                  y=[amplitude, [0, 1.1], [1.0], [0, 1.1]])
    # The band [0, f_s/2] and, beyond it, where the true tone would be.
    yield relayout("spectrum", **{"xaxis.range": [0, 1.05 * max(f_hz, fs_hz / 2)]})
    yield status((6, STEPS), peak_hz=peak / T)
    if ctx.should_stop():
        return

    # (5) Reconstruction from 401 unit-spaced samples, built up chunk by chunk.
    n_s = torch.arange(-SAMPLES, SAMPLES + 1, dtype=torch.float64, device=device)
    f_n = torch.from_numpy(band_limited(n_s.cpu().numpy())).to(device)
    shown_n = np.arange(-int(X_MAX), int(X_MAX) + 1)
    yield restyle("reconstruction", [1], x=[shown_n], y=[band_limited(shown_n)])
    x_all = torch.linspace(-X_MAX, X_MAX, X_POINTS, dtype=torch.float64, device=device)
    w = params.width
    err_sinc, err_gauss = [], []
    for i, x in enumerate(torch.tensor_split(x_all, CHUNKS), start=1):
        if ctx.should_stop():
            return
        diff = x[:, None] - n_s[None, :]  # (chunk, 401)
        sinc = torch.sinc(diff) @ f_n
        gauss = (torch.exp(-diff**2 / (2 * w**2)) / (math.sqrt(2 * math.pi) * w)) @ f_n
        x_np, sinc_np, gauss_np = x.cpu().numpy(), sinc.cpu().numpy(), gauss.cpu().numpy()
        truth = band_limited(x_np)
        err_sinc.append(np.abs(sinc_np - truth))
        err_gauss.append(np.abs(gauss_np - truth))
        yield extend("reconstruction", [0, 2, 3], x=[x_np] * 3, y=[truth, sinc_np, gauss_np])
        yield extend("reconstruction_error", [0, 1], x=[x_np] * 2,
                     y=[err_sinc[-1], err_gauss[-1]])
        yield status((6 + i, STEPS))
    sinc_max = float(np.concatenate(err_sinc).max())
    gauss_max = float(np.concatenate(err_gauss).max())

    checks = _checks(params, f, Ff, theorem_err, D, x_n, alias_n, X, (F, S, R), sinc_max,
                     gauss_max, ctx)
    yield status((STEPS, STEPS))
    yield finish(checks, convolution_theorem_error=theorem_err, f_a=f_a, peak_hz=peak / T,
                 sinc_max_error=sinc_max, gauss_max_error=gauss_max)


def _checks(params: FourierParams, f: torch.Tensor, Ff: torch.Tensor, theorem_err: float,
            D: np.ndarray, x_n: np.ndarray, alias_n: np.ndarray, X: np.ndarray,
            tone: tuple[int, int, int], sinc_max: float, gauss_max: float,
            ctx: RunContext) -> list[Check]:
    n = params.size
    f_np = f.cpu().numpy()
    Ff_np = Ff.cpu().numpy()
    reference = np.fft.fft2(f_np)
    dft_err = float(np.abs(Ff_np - reference).max() / np.abs(reference).max())
    energy = float((f_np**2).sum())
    parseval_err = abs(float((np.abs(Ff_np) ** 2).sum()) / n**2 - energy) / energy

    u = np.arange(N_DIRAC)
    dirac_err = float(np.abs(D - np.exp(-2j * np.pi * u * params.x0 / N_DIRAC)).max())
    d3 = torch.from_numpy(kernels.delta(3)).to(f.device)
    identity_err = float((kernels.convolve(f, d3, "wrap") - f).abs().max())

    alpha, beta = (float(v) for v in ctx.rng.normal(size=2))
    g = ctx.rng.standard_normal((n, n))
    mixed = torch.fft.fft2(alpha * f + beta * torch.from_numpy(g).to(f.device)).cpu().numpy()
    superposed = alpha * reference + beta * np.fft.fft2(g)
    linearity_err = float(np.abs(mixed - superposed).max() / np.abs(superposed).max())
    twice = torch.fft.fft2(Ff).cpu().numpy()
    flipped = f_np[(-np.arange(n)) % n][:, (-np.arange(n)) % n]  # f[−u, −v]
    duality_err = float(np.abs(twice / n**2 - flipped).max())

    F, S, R = tone
    predicted = abs(R)  # in bins of 1/T = 0.1 Hz
    peak = int(np.argmax(X))
    alias_err = float(np.abs(x_n - alias_n).max())
    return [
        Check(
            name="2-D DFT: torch.fft.fft2 = numpy.fft.fft2",
            formula=r"\frac{\max |F_{\text{torch}} - F_{\text{numpy}}|}{\max |F_{\text{numpy}}|}"
            r" \le 10^{-12}",
            measured=dft_err, reference=EXACT_TOL, relation="<=",
            detail=f"The {n}×{n} picture in float64 on {f.device.type}.",
        ),
        Check(
            name="Parseval",
            formula=r"\Big|\tfrac{1}{N^2}\sum_{u,v} |F[u,v]|^2 - \sum_{x,y} f[x,y]^2\Big|"
            r" \big/ \sum f^2 \le 10^{-12}",
            measured=parseval_err, reference=EXACT_TOL, relation="<=",
            detail=f"Energy Σf² = {energy:.6g}.",
        ),
        Check(
            name="Convolution theorem F[f * g] = F[f]·F[g]",
            formula=r"\frac{\max |\mathcal F[f * g] - \mathcal F[f]\,\mathcal F[\tilde g]|}"
            r"{\max |\mathcal F[f]\,\mathcal F[\tilde g]|} \le 10^{-12}",
            measured=theorem_err, reference=EXACT_TOL, relation="<=",
            detail=f"g = {kernels.LABELS[params.kernel]}; f * g by F.conv2d (flipped kernel, "
            "circular padding), its DFT by torch; the product by numpy.fft with g̃ the kernel "
            "zero-padded to the picture, origin at [0, 0].",
        ),
        Check(
            name="DFT of δ[x − x0] = e^{−i2πux0/N}",
            formula=r"\max_u |\mathcal F[\delta[x - x_0]](u) - e^{-i 2\pi u x_0/N}| "
            r"\le 10^{-12}",
            measured=dirac_err, reference=EXACT_TOL, relation="<=",
            detail=f"N = {N_DIRAC}, x0 = {params.x0}: |F| = 1 at every u, only the phase "
            "turns.",
        ),
        Check(
            name="δ is the identity of convolution",
            formula=r"\max |\delta * f - f| \le 10^{-12}",
            measured=identity_err, reference=EXACT_TOL, relation="<=",
            detail="A 3×3 δ convolved with the picture by F.conv2d (circular).",
        ),
        Check(
            name="Linearity",
            formula=r"\frac{\max |\mathcal F[\alpha f_1 + \beta f_2] - \alpha F_1 - \beta F_2|}"
            r"{\max |\alpha F_1 + \beta F_2|} \le 10^{-12}",
            measured=linearity_err, reference=EXACT_TOL, relation="<=",
            detail=f"f_1 the picture, f_2 Gaussian noise (seed {ctx.seed}), α = {alpha:.3f}, "
            f"β = {beta:.3f}; the left side by torch, F_1 and F_2 by numpy.",
        ),
        Check(
            name="Duality F F f[u] = N f[−u]",
            formula=r"\max_{u,v} \Big|\tfrac{1}{N^2}\,\mathcal F\mathcal F f[u, v] - f[-u, -v]"
            r"\Big| \le 10^{-12}",
            measured=duality_err, reference=EXACT_TOL, relation="<=",
            detail=f"2-D, so the factor is N² = {n**2}; indices modulo N: transforming twice "
            "turns the picture upside down and left to right.",
        ),
        Check(
            name="Aliasing: rfft peak at the folded frequency",
            formula=r"\arg\max_k |X_k| / T = f_a = |f - \operatorname{round}(f/f_s)\, f_s|",
            measured=peak / T, reference=predicted / T, relation="=",
            passed=peak == predicted,
            detail=f"f = {F / DECI:g} Hz sampled at f_s = {S / DECI:g} Hz for T = {T} s "
            f"({S} samples, whole cycles): the peak is bin {peak} of {len(X) - 1}, "
            f"{peak / T:g} Hz; predicted {predicted / T:g} Hz"
            + (" (above f_s/2, so it folds)." if 2 * F > S else " (below f_s/2: no aliasing)."),
        ),
        Check(
            name="Samples lie on the alias tone",
            formula=r"\max_n |\sin(2\pi f t_n + \varphi) - \sin(2\pi f_a' t_n + \varphi)| "
            r"\le 10^{-9},\ t_n = n/f_s",
            measured=alias_err, reference=ALIAS_TOL, relation="<=",
            detail=f"f_a' = {R / DECI:g} Hz (signed, ≡ f mod f_s); the arguments differ by "
            "2π·k·n, so only rounding separates them.",
        ),
        Check(
            name="Sinc reconstruction is within 2·10⁻²",
            formula=r"\max_{|x| \le 20} \Big|\sum_{|n| \le 200} f(n)\,\operatorname{sinc}(x - n)"
            r" - f(x)\Big| < 2\cdot10^{-2}",
            measured=sinc_max, reference=SINC_BOUND, relation="<",
            detail=f"f(x) = sin(2π·{NU[0]}x) + {AMPLITUDE[1]:g}·sin(2π·{NU[1]}x), band-limited "
            f"below ½; {2 * SAMPLES + 1} samples, {X_POINTS} points on [−20, 20]; the error "
            "is the truncated tail of the series.",
        ),
        Check(
            name="Sinc beats the Gaussian kernel",
            formula=r"\max |f_{\text{sinc}} - f| < \max |f_{G_w} - f|",
            measured=sinc_max, reference=gauss_max, relation="<",
            detail=f"Gaussian of width w = {params.width:g}: max error {gauss_max:.3g}; it damps "
            f"the {NU[1]} component by exp(−2π²w²ν²) = "
            f"{math.exp(-2 * math.pi**2 * params.width**2 * NU[1]**2):.3f} (ERRATA G-2.2-4).",
        ),
    ]


experiment = Experiment(
    slug="fourier",
    title="Fourier: spectra, the convolution theorem, Dirac, aliasing and sinc reconstruction",
    section=Section("2.2", "Image segmentation", chapter="2 Computer vision"),
    summary=(
        "A picture's 2-D DFT (log magnitude and phase); the convolution theorem checked on the "
        "picture and a kernel; the DFT of a shifted Dirac, linearity and duality; a sine "
        "sampled below the Nyquist rate showing up at its folded frequency (click the map to "
        "choose f and f_s); and a band-limited signal rebuilt from its samples by Shannon's "
        "sinc series, against a Gaussian kernel."
    ),
    formulas=FORMULAS,
    Params=FourierParams,
    figures=figures,
    run=run,
    clicks=(ClickInput("aliasing_map", x="f", y="fs"),),
)
