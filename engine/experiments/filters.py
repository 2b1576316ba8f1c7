r"""2.2 Important kernels: an image filtered by the sheet's kernels, and what each one does.

The cheat sheet's kernel table, corrected per ERRATA.md G-2.2-3 (see
:mod:`engine.experiments.kernels`), applied as a correlation, which is what ``F.conv2d``
computes:

.. math:: (k \star I)[p] = \sum_j k[j]\, I[p + j - c],\qquad
          c = (\lfloor h/2\rfloor, \lfloor w/2\rfloor),

with :math:`\tfrac18\,\text{Sobel}_x \star I \approx \partial_x I`,
:math:`\tfrac16\,\text{Prewitt}_x \star I \approx \partial_x I`, the Laplacian
:math:`\approx \partial_x^2 I + \partial_y^2 I`, and the Gaussian
:math:`G_\sigma(x, y) = \frac{1}{2\pi\sigma^2} e^{-(x^2 + y^2)/(2\sigma^2)}` a low-pass filter.
A kernel's frequency response is the DFT of the kernel zero-padded to the image; with
:math:`\tilde k` the padded kernel, origin moved to [0, 0], the convolution theorem for a
**correlation** carries a complex conjugate (circular boundary, real k):

.. math:: \mathcal F[k \star I] = \mathcal F[I] \cdot \overline{\mathcal F[\tilde k]},

while a convolution :math:`k * I` has :math:`\mathcal F[I] \cdot \mathcal F[\tilde k]`; they
agree for point-symmetric kernels (Gaussian, box, Laplacian) and differ in sign for the
derivative kernels. Reference: Gonzalez & Woods, *Digital Image Processing*, §3.6, §4.7, §10.2.

The run filters the picture on ``ctx.device`` in float32 and checks it against
``scipy.ndimage.correlate``, the table on a ramp :math:`I = ax + by` (CHECKS.md 2.2-b), the
Gaussian's sum and the convolution theorem against ``numpy.fft``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
from pydantic import Field, field_validator
from scipy import ndimage

from engine.core import (
    Check,
    Experiment,
    Formula,
    Frame,
    Params,
    RunContext,
    Section,
    finish,
    restyle,
    status,
)
from engine.experiments import kernels
from engine.experiments.kernels import CUSTOM_PATTERN, DIVERGING, Boundary
from engine.images import gray_heatmap, image_axes, image_field, load_image, to_display

FLOAT32_TOL = 1e-5  # F.conv2d in float32 against scipy in float64, per unit of Σ|k|
EXACT_TOL = 1e-12  # float64 (CHECKS.md 2.2-b)
GAUSS_SUM_TOL = 2e-3  # CHECKS.md 2.2-b
RAMP_SIDE = 24
STEPS = 5

FilterKernel = Literal["sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "laplacian", "gaussian",
                       "box", "high_pass", "diff_x", "diff_y", "custom"]


class FiltersParams(Params):
    """The picture, the kernel and how the image is extended beyond its border."""

    image: str = image_field("camera")
    size: int = Field(128, ge=64, le=256, description="The picture is resampled to size×size "
                      "(at least 64, so every kernel fits).")
    kernel: FilterKernel = Field(
        "sobel_x", description="The kernel (ERRATA G-2.2-3, correlation form); 'custom' takes "
        "custom_kernel.",
    )
    sigma: float = Field(1.5, ge=0.8, le=4.0, description="σ of the Gaussian G_σ; its size is "
                         "2⌊4σ + ½⌋ + 1 (as scipy.ndimage.gaussian_filter).")
    box_size: int = Field(3, ge=3, le=15, description="Side of the Box (mean) and High-pass "
                          "kernels; odd.")
    custom_kernel: str = Field(
        "0 -1 0; -1 5 -1; 0 -1 0", max_length=400, pattern=CUSTOM_PATTERN,
        description="For kernel = custom: 9 (3×3) or 25 (5×5) numbers in [−100, 100], row by "
        "row, separated by spaces or commas, rows optionally by ';'. Default: sharpen δ − ∇².",
    )
    boundary: Boundary = Field(
        "mirror", description="Beyond the border (scipy.ndimage's names): mirror (d c b | a b "
        "c d), nearest (a a | a b), wrap (circular) or constant (zeros).",
    )

    @field_validator("box_size")
    @classmethod
    def _odd(cls, box_size: int) -> int:
        kernels.check_odd("box_size", box_size)
        return box_size

    @field_validator("custom_kernel")
    @classmethod
    def _parses(cls, text: str) -> str:
        kernels.parse_kernel(text)
        return text


def kernel_of(params: FiltersParams) -> np.ndarray:
    """The chosen kernel as a float64 array (correlation form)."""
    if params.kernel == "custom":
        return kernels.parse_kernel(params.custom_kernel)
    return kernels.kernel(params.kernel, params.sigma, params.box_size)


def frequencies(n: int) -> np.ndarray:
    """fftshifted DFT frequencies in cycles per pixel, −½ … ½."""
    return np.fft.fftshift(np.fft.fftfreq(n))


FORMULAS = (
    Formula("Correlation (F.conv2d, scipy.ndimage.correlate)",
            r"(k \star I)[p] = \sum_j k[j]\, I[p + j - c],\quad "
            r"c = (\lfloor h/2 \rfloor, \lfloor w/2 \rfloor)"),
    Formula("Derivative kernels",
            r"\text{Sobel}_x = \begin{bmatrix}-1&0&1\\-2&0&2\\-1&0&1\end{bmatrix},\ "
            r"\tfrac18\,\text{Sobel}_x \star I \approx \partial_x I,\ "
            r"\tfrac16\,\text{Prewitt}_x \star I \approx \partial_x I,\ "
            r"\text{Diff}_x = [-1\ \ 1]", erratum="G-2.2-3"),
    Formula("Laplacian, box, high-pass",
            r"\nabla^2 \approx \begin{bmatrix}0&1&0\\1&-4&1\\0&1&0\end{bmatrix},\ "
            r"\text{Box} = \tfrac19 \mathbf 1_{3\times 3},\ \text{High-pass} = \delta - "
            r"\text{Box}", erratum="G-2.2-3"),
    Formula("Gaussian", r"G_\sigma(x, y) = \frac{1}{2\pi\sigma^2} e^{-\frac{x^2 + y^2}"
            r"{2\sigma^2}}"),
    Formula("Convolution theorem for a correlation (circular)",
            r"\mathcal F[k \star I] = \mathcal F[I] \cdot \overline{\mathcal F[\tilde k]},\quad "
            r"\mathcal F[k * I] = \mathcal F[I] \cdot \mathcal F[\tilde k]"),
)


def kernel_figure(k: np.ndarray, label: str) -> go.Figure:
    """The kernel as an annotated heatmap, offsets from its origin on the axes."""
    h, w = k.shape
    cy, cx = kernels.origin(k)
    m = max(float(np.abs(k).max()), 1e-12)
    annotate = max(h, w) <= 7
    text = [[f"{v:.3g}" for v in row] for row in k] if annotate else None
    trace = go.Heatmap(
        z=k, x=np.arange(w) - cx, y=np.arange(h) - cy, colorscale=DIVERGING, zmin=-m, zmax=m,
        text=text, texttemplate="%{text}" if annotate else None,
        hovertemplate="offset (%{x}, %{y}): %{z:.4g}<extra></extra>",
        colorbar=dict(len=0.8),
    )
    origin_box = dict(type="rect", x0=-0.5, x1=0.5, y0=-0.5, y1=0.5,
                      line=dict(color="#222", width=2))
    return go.Figure(trace, layout=dict(
        title=f"{label}, {h}×{w}, Σk = {k.sum():.4g} (□ origin c)",
        xaxis=dict(title="j_x − c_x", dtick=1 if w <= 11 else None, constrain="domain"),
        yaxis=dict(title="j_y − c_y", autorange="reversed", scaleanchor="x",
                   dtick=1 if h <= 11 else None, constrain="domain"),
        shapes=[origin_box],
    ))


def figures(params: FiltersParams) -> dict[str, go.Figure]:
    """Kernel, input, output, frequency response |F[k̃]| and the Sobel gradient magnitude."""
    k = kernel_of(params)
    label = kernels.LABELS[params.kernel]
    n = params.size
    signed = kernels.is_signed(k)
    if signed:
        out_trace = kernels.signed_heatmap("k ⋆ I")
        out_title = f"{label} ⋆ I, signed: blue < 0 < red"
    else:
        out_trace = gray_heatmap(name="k ⋆ I")
        out_title = f"{label} ⋆ I (gray, [0, 1])"
    u = frequencies(n)
    response = go.Figure(
        go.Heatmap(z=[[0]], x=u, y=u, colorscale="Viridis", zmin=0, zmax=255,
                   colorbar=dict(title="|F[k̃]|", len=0.8),
                   hovertemplate="u %{x:.3f}, v %{y:.3f}<extra></extra>"),
        layout=dict(title=f"|F[k̃]|: k zero-padded to {n}×{n}, fftshifted",
                    xaxis=dict(title="u (cycles/pixel)", constrain="domain"),
                    yaxis=dict(title="v (cycles/pixel)", scaleanchor="x",
                               constrain="domain")),
    )
    return {
        "kernel": kernel_figure(k, label),
        "input": go.Figure(gray_heatmap(name="I"),
                           layout=image_axes(title=f"I: {params.image}, {n}×{n}")),
        "output": go.Figure(out_trace, layout=image_axes(title=out_title)),
        "response": response,
        "gradient": go.Figure(
            gray_heatmap(name="|∇I|"),
            layout=image_axes(title="Sobel |∇I| = √(G_x² + G_y²)/8, over its max"),
        ),
    }


def ramp_errors(k: np.ndarray, box_size: int, a: float, b: float) -> dict[str, float]:
    """Max errors of the table on the ramp I = ax + by (valid correlation, float64):
    Sobel/8 and Prewitt/6 and Diff give the slopes, the Laplacian 0, the box the ramp; and,
    under "chosen", k against its moments: k ⋆ I = (Σk) I + a M_x + b M_y."""
    side = max(RAMP_SIDE, max(k.shape) + 8)
    I = kernels.ramp(side, a, b)  # noqa: E741 (the sheet's symbol)

    def valid(k_: np.ndarray) -> torch.Tensor:
        return kernels.correlate_valid(I, torch.from_numpy(k_))

    def centres(k_: np.ndarray) -> torch.Tensor:
        """I at the origin of each valid window."""
        (h, w), (cy, cx) = k_.shape, kernels.origin(k_)
        return I[cy:side - (h - 1 - cy), cx:side - (w - 1 - cx)]

    B = kernels.box(box_size)
    total, M_x, M_y = kernels.moments(k)
    errors = {
        "Sobel_x/8 = a": (valid(kernels.SOBEL_X) / 8 - a).abs().max(),
        "Sobel_y/8 = b": (valid(kernels.SOBEL_X.T) / 8 - b).abs().max(),
        "Prewitt_x/6 = a": (valid(kernels.PREWITT_X) / 6 - a).abs().max(),
        "Prewitt_y/6 = b": (valid(kernels.PREWITT_X.T) / 6 - b).abs().max(),
        "Diff_x = a": (valid(kernels.DIFF_X) - a).abs().max(),
        "Diff_y = b": (valid(kernels.DIFF_X.T) - b).abs().max(),
        "Laplacian = 0": valid(kernels.LAPLACIAN).abs().max(),
        f"Box {box_size}×{box_size} = I": (valid(B) - centres(B)).abs().max(),
        "chosen": (valid(k) - (total * centres(k) + a * M_x + b * M_y)).abs().max(),
    }
    return {name: float(e) for name, e in errors.items()}


def run(params: FiltersParams, ctx: RunContext) -> Iterator[Frame]:
    """Filter, show each panel as it is ready, then check against scipy and numpy.fft."""
    k = kernel_of(params)
    label = kernels.LABELS[params.kernel]
    n = params.size
    I = load_image(params.image, n, ctx)  # noqa: E741 (n, n) float32 in [0, 1]
    yield restyle("input", [0], z=[to_display(I)])
    yield status((1, STEPS))

    k_t = torch.from_numpy(k).to(device=I.device, dtype=I.dtype)
    out = kernels.correlate(I, k_t, params.boundary)  # (n, n) float32
    out_np = out.cpu().numpy()
    if kernels.is_signed(k):
        levels, m = kernels.signed_to_display(out_np)
        yield restyle("output", [0], z=[levels], **{"colorbar.ticktext": [kernels.signed_ticks(m)]})
    else:
        yield restyle("output", [0], z=[to_display(out)])
    yield status((2, STEPS), out_min=float(out_np.min()), out_max=float(out_np.max()))
    if ctx.should_stop():
        return

    k_tilde = torch.from_numpy(kernels.embed(k, n)).to(I.device)
    K = torch.fft.fft2(k_tilde)  # (n, n) complex128: the frequency response
    magnitude = torch.fft.fftshift(K.abs()).cpu().numpy()
    top = float(magnitude.max())
    tickvals, ticktext = kernels.level_ticks(0.0, top)
    yield restyle("response", [0], z=[kernels.to_levels(magnitude, 0.0, top)],
                  **{"colorbar.tickvals": [tickvals], "colorbar.ticktext": [ticktext]})
    dc_gain = float(magnitude[n // 2, n // 2])  # |F[k̃]|(0, 0) = |Σk|
    yield status((3, STEPS), dc_gain=dc_gain, max_gain=top)

    sobel = torch.from_numpy(kernels.SOBEL_X).to(I)
    G_x = kernels.correlate(I, sobel, params.boundary) / 8
    G_y = kernels.correlate(I, sobel.T, params.boundary) / 8
    grad = torch.sqrt(G_x**2 + G_y**2)
    yield restyle("gradient", [0], z=[to_display(grad / grad.max().clamp_min(1e-12))])
    yield status((4, STEPS), max_gradient=float(grad.max()))
    if ctx.should_stop():
        return

    checks = list(_checks(params, k, I, out_np, ctx))
    yield status((STEPS, STEPS))
    total, M_x, M_y = kernels.moments(k)
    yield finish(checks, kernel=label, kernel_size=f"{k.shape[0]}×{k.shape[1]}",
                 kernel_sum=total, M_x=M_x, M_y=M_y, dc_gain=dc_gain, max_gain=top,
                 out_min=float(out_np.min()), out_max=float(out_np.max()))


def _checks(params: FiltersParams, k: np.ndarray, I: torch.Tensor,  # noqa: E741
            out: np.ndarray, ctx: RunContext) -> Iterator[Check]:
    label = kernels.LABELS[params.kernel]
    scale = max(1.0, float(np.abs(k).sum()))  # |k ⋆ I| ≤ Σ|k| for I in [0, 1]
    I64 = I.double().cpu()
    reference = ndimage.correlate(I64.numpy(), k, mode=params.boundary, cval=0.0)

    err32 = float(np.abs(out.astype(np.float64) - reference).max())
    yield Check(
        name="F.conv2d = scipy.ndimage.correlate (float32)",
        formula=r"\max_p |(k \star I)_{\text{conv2d}} - (k \star I)_{\text{scipy}}| "
        r"\le 10^{-5} \max(1, \textstyle\sum|k|)",
        measured=err32, reference=FLOAT32_TOL * scale, relation="<=",
        detail=f"{label} on the {params.size}×{params.size} picture, boundary "
        f"'{params.boundary}' (torch pad '{kernels.PAD_MODE[params.boundary]}'), run on "
        f"{I.device.type} in float32, scipy in float64.",
    )
    out64 = kernels.correlate(I64, torch.from_numpy(k), params.boundary).numpy()
    err64 = float(np.abs(out64 - reference).max())
    yield Check(
        name="F.conv2d = scipy.ndimage.correlate (float64)",
        formula=r"\max_p |(k \star I)_{\text{conv2d}} - (k \star I)_{\text{scipy}}| "
        r"\le 10^{-12} \max(1, \textstyle\sum|k|)",
        measured=err64, reference=EXACT_TOL * scale, relation="<=",
        detail="The same correlation in float64 on the CPU: the two agree to rounding, so the "
        "origin c and the boundary handling are the same.",
    )

    a, b = (float(v) for v in ctx.rng.uniform(-1.0, 1.0, size=2))
    ramp = ramp_errors(k, params.box_size, a, b)
    chosen = ramp.pop("chosen")
    table = max(ramp.values())
    yield Check(
        name="Ramp I = ax + by: the kernel table",
        formula=r"\tfrac18\text{Sobel}_x \star I = \tfrac16\text{Prewitt}_x \star I = "
        r"\text{Diff}_x \star I = a,\ \nabla^2 \star I = 0,\ \text{Box} \star I = I",
        measured=table, reference=EXACT_TOL, relation="<=",
        detail=f"a = {a:.4f}, b = {b:.4f}, {RAMP_SIDE}×{RAMP_SIDE} ramp, valid correlation "
        "(float64); y-kernels give b. Errors: "
        + ", ".join(f"{name}: {e:.1g}" for name, e in ramp.items()),
    )
    total, M_x, M_y = kernels.moments(k)
    ramp_scale = max(1.0, float(np.abs(k).sum())) * max(RAMP_SIDE, max(k.shape) + 8)
    yield Check(
        name=f"Ramp I = ax + by: {label} gives (Σk) I + a M_x + b M_y",
        formula=r"k \star I = \big(\textstyle\sum_j k[j]\big) I + a M_x + b M_y,\quad "
        r"M_x = \textstyle\sum_j k[j]\,(j_x - c_x)",
        measured=chosen, reference=EXACT_TOL * ramp_scale, relation="<=",
        detail=f"Σk = {total:.4g}, M_x = {M_x:.4g}, M_y = {M_y:.4g}: on this ramp {label} ⋆ I "
        f"= {total:.4g}·I + {a * M_x + b * M_y:.4g}.",
    )

    G = kernels.gaussian(params.sigma)
    gauss_sum = float(G.sum())
    yield Check(
        name="Discrete Gaussian sums to 1",
        formula=r"\Big|\sum_{|x|,|y| \le r} G_\sigma(x, y) - 1\Big| \le 2\cdot10^{-3},\quad "
        r"r = \lfloor 4\sigma + \tfrac12 \rfloor",
        measured=abs(gauss_sum - 1.0), reference=GAUSS_SUM_TOL, relation="<=",
        detail=f"σ = {params.sigma:g}, {G.shape[0]}×{G.shape[1]} samples of 1/(2πσ²)·"
        f"exp(−(x²+y²)/(2σ²)), not renormalised: Σ = {gauss_sum:.6f}.",
    )

    # Circular correlation by F.conv2d against the product of numpy DFTs.
    n = params.size
    circular = kernels.correlate(I64, torch.from_numpy(k), "wrap").numpy()
    F_I = np.fft.fft2(I64.numpy())
    K = np.fft.fft2(kernels.embed(k, n))
    predicted = F_I * np.conj(K)
    peak = float(np.abs(predicted).max()) or 1.0
    err = float(np.abs(np.fft.fft2(circular) - predicted).max()) / peak
    without_conj = float(np.abs(np.fft.fft2(circular) - F_I * K).max()) / peak
    yield Check(
        name="Convolution theorem: F[k ⋆ I] = F[I]·conj(F[k̃])",
        formula=r"\frac{\max |\mathcal F[k \star I] - \mathcal F[I]\,\overline{\mathcal F"
        r"[\tilde k]}|}{\max |\mathcal F[I]\,\overline{\mathcal F[\tilde k]}|} \le 10^{-12}",
        measured=err, reference=EXACT_TOL, relation="<=",
        detail="Circular (wrap) correlation by F.conv2d in float64 against numpy.fft.fft2; "
        f"without the conjugate (the convolution's formula) the error is {without_conj:.3g}"
        + (" (k is point-symmetric, so F[k̃] is real and the two agree)."
           if without_conj <= EXACT_TOL else "."),
    )


experiment = Experiment(
    slug="filters",
    title="Important kernels: Sobel, Prewitt, Laplacian, Gaussian, box, high-pass, Diff",
    section=Section("2.2", "Image segmentation", chapter="2 Computer vision"),
    summary=(
        "A picture filtered by the sheet's kernel table (corrected, as correlation kernels): "
        "the kernel, the signed or smoothed output, its frequency response |F[k]| and the "
        "Sobel gradient magnitude; checked against scipy.ndimage, on a ramp where Sobel/8 and "
        "Prewitt/6 return the slope, and with the convolution theorem (a correlation takes the "
        "complex conjugate)."
    ),
    formulas=FORMULAS,
    Params=FiltersParams,
    figures=figures,
    run=run,
)
