r"""2.2 Image segmentation by a threshold, chosen by trial and error or by Otsu's rule.

The cheat sheet, corrected per ERRATA.md A-2.2-2: a segmentation of :math:`I` is a partition
into regions

.. math:: I = \bigcup_{i=1}^N R_i,\qquad R_i \cap R_j = \emptyset\ (i \ne j),

and thresholding makes two of them, :math:`B(x,y) = 1` if :math:`I(x,y) \ge T` else 0, with
:math:`T` found "by trial and error, comparing the result with ground truth". Otsu's rule
(Otsu 1979) picks :math:`T` without ground truth: splitting the histogram at :math:`T` into
classes of weight :math:`\omega_{0,1}`, mean :math:`\mu_{0,1}` and variance
:math:`\sigma^2_{0,1}`,

.. math:: \sigma^2 = \underbrace{\omega_0\sigma_0^2 + \omega_1\sigma_1^2}_{\sigma_W^2(T)}
          + \underbrace{\omega_0\omega_1(\mu_0 - \mu_1)^2}_{\sigma_B^2(T)},

so maximising the between-class variance :math:`\sigma_B^2` minimises the within-class
variance :math:`\sigma_W^2`; the total :math:`\sigma^2` does not depend on :math:`T`.

References: Gonzalez & Woods, *Digital Image Processing* §10.3; N. Otsu, *A threshold selection
method from gray-level histograms*, IEEE Trans. SMC 9 (1979).

The image is synthetic so that the ground truth is known and the error of every :math:`T` can
be measured: random disks and rectangles of intensity :math:`b + c` on a background :math:`b`
(contrast :math:`c`), plus an optional horizontal illumination ramp and Gaussian noise, clipped
to [0, 1] and quantised to 8 bits as a camera would, so :math:`I` takes the values
:math:`l/255` and the histogram of its 256 levels is exact. (A real picture has no ground
truth, so it could show Otsu's choice but not the error that the sheet asks to compare.)
The run sweeps :math:`T = k/255` for every level :math:`k`, streaming the error, IoU, Dice and
both variances, then the error over :math:`(T, \sigma)` for the same shapes and noise draw:
clicking that map sets :math:`T` and :math:`\sigma`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from pydantic import Field
from scipy import ndimage
from skimage.filters import threshold_otsu

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
    restyle,
    status,
)
from engine.images import gray_heatmap, image_axes

LEVELS = 256  # 8-bit: I takes the values l / 255, l = 0 … 255
EXACT_TOL = 1e-12  # CHECKS.md 2.2-a
CHUNK = 32  # thresholds per streamed frame
SIGMA_MAX = 0.5
SIGMA_GRID = np.linspace(0.0, SIGMA_MAX, 26)  # rows of the (T, σ) error map
ROWS_PER_FRAME = 7
# Error-map categories and their colours: true negative, true positive, false positive
# (background called foreground), false negative (foreground missed).
TN, TP, FP, FN = range(4)
ERROR_COLORS = ("#222222", "#dddddd", "#d62728", "#1f77b4")


class ThresholdingParams(Params):
    """The threshold, and the synthetic scene it segments."""

    T: float = Field(0.5, ge=0.0, le=1.0,
                     description="Threshold T: B = 1 where I ≥ T (or click the error map).")
    use_otsu: bool = Field(False, description="Use Otsu's T (max between-class variance) "
                           "instead of the T above.")
    contrast: float = Field(0.4, ge=0.05, le=1.0,
                            description="Foreground minus background intensity c; the two sit "
                            "symmetrically about 0.5.")
    sigma: float = Field(0.1, ge=0.0, le=SIGMA_MAX,
                         description="Standard deviation σ of the additive Gaussian noise.")
    gradient: float = Field(0.0, ge=0.0, le=0.5,
                            description="Illumination ramp: intensity rises by this much from "
                            "the left edge to the right one (a global T then fails).")
    shapes: int = Field(6, ge=1, le=20, description="Number of random disks and rectangles.")
    shape_size: float = Field(0.12, ge=0.03, le=0.3,
                              description="Largest shape radius, as a fraction of the side.")
    size: int = Field(128, ge=32, le=256, description="Image side in pixels.")


FORMULAS = (
    Formula("Segmentation",
            r"I = \bigcup_{i=1}^N R_i,\quad R_i \cap R_j = \emptyset\ \ (i \ne j)",
            erratum="A-2.2-2"),
    Formula("Thresholding", r"B(x,y) = \begin{cases} 1 & I(x,y) \ge T \\ 0 & \text{else}"
            r"\end{cases}"),
    Formula("Otsu's split of the variance",
            r"\sigma^2 = \omega_0\sigma_0^2 + \omega_1\sigma_1^2 + \omega_0\omega_1"
            r"(\mu_0 - \mu_1)^2,\quad T^\ast = \arg\max_T\ \omega_0\omega_1(\mu_0 - \mu_1)^2"),
)


# ----------------------------------------------------------------------------------------------
# The scene


def scene(params: ThresholdingParams, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth (bool, size×size: union of random disks and rectangles) and a standard
    normal field ε that the noise is made of, σ·ε (the same draw for every σ)."""
    n = params.size
    g, device = ctx.generator, ctx.device
    u = torch.rand((params.shapes, 5), generator=g, device=device, dtype=torch.float64)
    centre = u[:, :2] * (n - 1)  # (S, 2): column, row
    # Radii of at least 2 px (1 px half-widths) so that every shape covers a pixel centre.
    r = torch.clamp(params.shape_size * n * (0.5 + 0.5 * u[:, 2]), min=2.0)
    half = torch.clamp(r[:, None] * (0.5 + 0.5 * u[:, 3:5]), min=1.0)  # rectangles: (S, 2)
    disk = torch.rand(params.shapes, generator=g, device=device) < 0.5
    ys, xs = torch.meshgrid(torch.arange(n, device=device, dtype=torch.float64),
                            torch.arange(n, device=device, dtype=torch.float64), indexing="ij")
    dx = xs[None] - centre[:, 0, None, None]  # (S, n, n)
    dy = ys[None] - centre[:, 1, None, None]
    in_disk = dx**2 + dy**2 <= r[:, None, None] ** 2
    in_rect = (dx.abs() <= half[:, 0, None, None]) & (dy.abs() <= half[:, 1, None, None])
    truth = torch.where(disk[:, None, None], in_disk, in_rect).any(dim=0)
    eps = torch.randn((n, n), generator=g, device=device, dtype=torch.float64)
    return truth, eps


def observe(truth: torch.Tensor, eps: torch.Tensor, params: ThresholdingParams,
            sigma: float) -> torch.Tensor:
    """The 8-bit levels l of I = clip(b + c·truth + ramp + σ·ε) (int64), I = l / 255."""
    n = truth.shape[-1]
    b = 0.5 - params.contrast / 2
    ramp = params.gradient * (torch.arange(n, device=truth.device, dtype=torch.float64)
                              / (n - 1) - 0.5)
    intensity = b + params.contrast * truth.double() + ramp[None, :] + sigma * eps
    return torch.round(intensity.clamp(0.0, 1.0) * (LEVELS - 1)).long()


def level_index(T: float) -> int:
    """k such that I ≥ T ⇔ l ≥ k: the number of levels l / 255 below T."""
    values = torch.arange(LEVELS, dtype=torch.float64) / (LEVELS - 1)
    return int(torch.searchsorted(values, torch.tensor([T], dtype=torch.float64))[0])


# ----------------------------------------------------------------------------------------------
# Every threshold k at once, from the exact histograms


def class_histograms(levels: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Counts of each level among background and foreground pixels (float64, 256 each)."""
    h_bg = torch.bincount(levels[~truth], minlength=LEVELS).double()
    h_fg = torch.bincount(levels[truth], minlength=LEVELS).double()
    return h_bg, h_fg


def sweep_errors(h_bg: torch.Tensor, h_fg: torch.Tensor) -> dict[str, torch.Tensor]:
    """For T = k/255, k = 0 … 255 (B = 1 ⇔ l ≥ k): misclassified fraction, IoU and Dice."""
    FP = h_bg.flip(0).cumsum(0).flip(0)  # background with l ≥ k
    TP = h_fg.flip(0).cumsum(0).flip(0)
    FN = h_fg.sum() - TP  # foreground with l < k
    n = h_bg.sum() + h_fg.sum()
    union = TP + FP + FN
    return {
        "error": (FP + FN) / n,
        "iou": torch.where(union > 0, TP / union.clamp(min=1), 1.0),
        "dice": torch.where(union > 0, 2 * TP / (2 * TP + FP + FN).clamp(min=1), 1.0),
        "FP": FP, "FN": FN,
    }


def variance_split(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """σ_B²(k) = ω₀ω₁(μ₀ − μ₁)² and σ_W²(k) = Σ_c Σ_{l ∈ c} p_l (x_l − μ_c)² for every k;
    an empty class adds nothing (σ_B² = 0 there)."""
    x = torch.arange(LEVELS, dtype=torch.float64, device=h.device) / (LEVELS - 1)
    p = h / h.sum()
    below = x[None, :] < x[:, None]  # (k, l): level l in class 0 when splitting at k
    omega0 = (below * p).sum(1)
    omega1 = (~below * p).sum(1)
    mu0 = (below * p * x).sum(1) / omega0.clamp(min=1e-300)
    mu1 = (~below * p * x).sum(1) / omega1.clamp(min=1e-300)
    mu_class = torch.where(below, mu0[:, None], mu1[:, None])  # (k, l)
    sigma_W2 = (p * (x - mu_class) ** 2).sum(1)  # two-pass: no cancellation
    sigma_B2 = torch.where((omega0 > 0) & (omega1 > 0), omega0 * omega1 * (mu0 - mu1) ** 2, 0.0)
    return sigma_B2, sigma_W2


def otsu_level(sigma_B2: torch.Tensor) -> int:
    """Otsu's k by brute force: the first level of largest between-class variance."""
    return int(torch.argmax(sigma_B2))


def error_landscape(truth: torch.Tensor, eps: torch.Tensor, params: ThresholdingParams,
                    sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error over (σ, T = k/255) for these shapes and this noise draw, with Otsu's k and the
    error-minimising k for each σ."""
    rows, otsu_k, best_k = [], [], []
    for sigma in sigmas:
        levels = observe(truth, eps, params, float(sigma))
        h_bg, h_fg = class_histograms(levels, truth)
        error = sweep_errors(h_bg, h_fg)["error"]
        rows.append(error.cpu().numpy())
        otsu_k.append(otsu_level(variance_split(h_bg + h_fg)[0]))
        best_k.append(int(torch.argmin(error)))
    return np.stack(rows), np.asarray(otsu_k), np.asarray(best_k)


def error_categories(B: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """TN, TP, FP, FN per pixel, as uint8."""
    return np.select([~B & ~truth, B & truth, B & ~truth], [TN, TP, FP], FN).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Figures


IMAGES = ("image I", "ground truth G", "segmentation B", "errors: FP red, FN blue")
BG_BARS, FG_BARS, T_LINE, OTSU_LINE, BEST_LINE = range(5)
ERROR, IOU, DICE, T_MARK, OTSU_MARK, BEST_MARK = range(6)
SIGMA_B2, SIGMA_W2, SIGMA_SUM, SIGMA_TOTAL, OTSU_VAR = range(5)
MAP, MAP_OTSU, MAP_BEST, MAP_POINT = range(4)


def _line(name, color, dash="solid", mode="lines", **extra):
    return go.Scatter(x=[], y=[], name=name, mode=mode, line=dict(color=color, dash=dash),
                      **extra)


def _marker(name, color, symbol):
    return go.Scatter(x=[], y=[], name=name, mode="markers",
                      marker=dict(color=color, symbol=symbol, size=11,
                                  line=dict(color="black", width=1)))


def figures(params: ThresholdingParams) -> dict[str, go.Figure]:
    """The four images, the histogram, error and variances against T, and the (T, σ) map."""
    images = make_subplots(rows=2, cols=2, subplot_titles=IMAGES, horizontal_spacing=0.03,
                           vertical_spacing=0.07)
    # One band of the colour scale per category: z = 0 … 3 on [−0.5, 3.5].
    categorical = [[b, c] for i, c in enumerate(ERROR_COLORS) for b in (i / 4, (i + 1) / 4)]
    for index, name in enumerate(IMAGES):
        trace = (gray_heatmap(np.zeros((0, 0)), name) if index < 3 else
                 dict(type="heatmap", z=np.zeros((0, 0)), name=name, zmin=-0.5, zmax=3.5,
                      colorscale=categorical, showscale=False,
                      hovertemplate="x %{x}, y %{y}: %{z} (0 TN, 1 TP, 2 FP, 3 FN)"
                      "<extra></extra>"))
        images.add_trace(trace, row=index // 2 + 1, col=index % 2 + 1)
    axes = image_axes()
    images.update_xaxes(**axes["xaxis"])
    for i in range(1, 5):
        images.update_layout({f"yaxis{i if i > 1 else ''}": dict(
            axes["yaxis"], scaleanchor=f"x{i if i > 1 else ''}")})
    images.update_layout(title="Segmenting I by B = 1[I ≥ T]", height=640,
                         plot_bgcolor="white", margin=dict(l=10, r=10, t=70, b=10))

    histogram = go.Figure(
        [go.Bar(x=[], y=[], name="background pixels", marker=dict(color="#7f7f7f"),
                width=1 / (LEVELS - 1)),
         go.Bar(x=[], y=[], name="foreground pixels", marker=dict(color="#ff7f0e"),
                width=1 / (LEVELS - 1)),
         _line("T", "#000000"), _line("Otsu's T*", "#9467bd", "dash"),
         _line("lowest-error T", "#2ca02c", "dot")],
        layout=dict(title="Histogram of I by ground-truth class (stacked)", barmode="stack",
                    bargap=0, xaxis=dict(title="intensity", range=[0, 1]),
                    yaxis=dict(title="pixels")),
    )
    error = go.Figure(
        [_line("misclassified fraction", "#d62728"), _line("IoU", "#1f77b4", "dash"),
         _line("Dice", "#17becf", "dot"), _line("T", "#000000"),
         _marker("Otsu's T*", "#9467bd", "diamond"), _marker("lowest error", "#2ca02c", "star")],
        layout=dict(title="Error against ground truth as T sweeps (trial and error)",
                    xaxis=dict(title="threshold T", range=[0, 1]),
                    yaxis=dict(title="fraction", range=[0, 1.02])),
    )
    variance = go.Figure(
        [_line("between-class σ_B²(T)", "#9467bd"), _line("within-class σ_W²(T)", "#8c564b"),
         _line("σ_B² + σ_W²", "#000000", "dash"),
         _line("total variance σ² (numpy)", "#bcbd22", "dot"),
         _marker("Otsu's T*: max σ_B²", "#9467bd", "diamond")],
        layout=dict(title="Otsu: σ² = σ_W²(T) + σ_B²(T); T* maximises σ_B²",
                    xaxis=dict(title="threshold T", range=[0, 1]),
                    yaxis=dict(title="variance")),
    )
    landscape = go.Figure(
        [go.Heatmap(x=np.arange(LEVELS) / (LEVELS - 1), y=[], z=np.zeros((0, LEVELS)),
                    colorscale="Viridis", zmin=0, zmax=0.5,
                    colorbar=dict(title="error"), name="error",
                    hovertemplate="T %{x:.3f}, σ %{y:.2f}: error %{z:.3f}<extra></extra>"),
         _line("Otsu's T*(σ)", "#ffffff", "dash"),
         _line("lowest-error T(σ)", "#ff7f0e", "dot"),
         _marker("this run (T, σ)", "#d62728", "x")],
        layout=dict(title="Error over threshold T and noise σ (click to set both)",
                    xaxis=dict(title="threshold T", range=[0, 1]),
                    yaxis=dict(title="noise σ", range=[0, SIGMA_MAX]),
                    legend=dict(orientation="h", y=-0.2)),
    )
    return {"images": images, "histogram": histogram, "error": error, "variance": variance,
            "landscape": landscape}


# ----------------------------------------------------------------------------------------------
# The run


def run(params: ThresholdingParams, ctx: RunContext) -> Iterator[Frame]:
    truth_t, eps = scene(params, ctx)
    levels_t = observe(truth_t, eps, params, params.sigma)
    truth = truth_t.cpu().numpy()
    levels = levels_t.cpu().numpy()
    I = levels / (LEVELS - 1)  # noqa: E741 (the sheet's symbol); float64, exactly l / 255
    chunks = -(-LEVELS // CHUNK)
    map_frames = -(-len(SIGMA_GRID) // ROWS_PER_FRAME)
    total = chunks + map_frames + 1

    yield restyle("images", [0, 1], z=[levels.astype(np.uint8), truth.astype(np.uint8) * 255])
    h_bg, h_fg = class_histograms(levels_t, truth_t)
    h = h_bg + h_fg
    x = np.arange(LEVELS) / (LEVELS - 1)
    peak = float(h.max())
    yield restyle("histogram", [BG_BARS, FG_BARS], x=[x, x],
                  y=[h_bg.cpu().numpy(), h_fg.cpu().numpy()])

    # 1. Every threshold k/255 from the exact class histograms, streamed in chunks.
    curves = {k: v.cpu().numpy() for k, v in sweep_errors(h_bg, h_fg).items()}
    sigma_B2_t, sigma_W2_t = variance_split(h)
    sigma_B2, sigma_W2 = sigma_B2_t.cpu().numpy(), sigma_W2_t.cpu().numpy()
    for i, start in enumerate(range(0, LEVELS, CHUNK), start=1):
        if ctx.should_stop():
            return
        part = slice(start, start + CHUNK)
        T_part = x[part]
        yield extend("error", [ERROR, IOU, DICE], x=[T_part] * 3,
                     y=[curves["error"][part], curves["iou"][part], curves["dice"][part]])
        yield extend("variance", [SIGMA_B2, SIGMA_W2, SIGMA_SUM], x=[T_part] * 3,
                     y=[sigma_B2[part], sigma_W2[part], sigma_B2[part] + sigma_W2[part]])
        yield status((i, total), T=float(T_part[-1]),
                     error=float(curves["error"][part].min()))

    # 2. Otsu's T*, the lowest error, and the chosen T.
    k_otsu = otsu_level(sigma_B2_t)
    k_best = int(np.argmin(curves["error"]))
    T_otsu, T_best = float(x[k_otsu]), float(x[k_best])
    T = T_otsu if params.use_otsu else params.T
    k_T = level_index(T)
    error_T = float(curves["error"][k_T])
    R = [levels_t < k_T, levels_t >= k_T]  # the regions R_1 (B = 0) and R_2 (B = 1)
    B = R[1].cpu().numpy()
    yield restyle("images", [2, 3], z=[B.astype(np.uint8) * 255, error_categories(B, truth)])
    yield restyle("histogram", [T_LINE, OTSU_LINE, BEST_LINE],
                  x=[[T, T], [T_otsu, T_otsu], [T_best, T_best]], y=[[0, peak]] * 3)
    yield restyle("error", [T_MARK, OTSU_MARK, BEST_MARK],
                  x=[[T, T], [T_otsu], [T_best]],
                  y=[[0, 1], [curves["error"][k_otsu]], [curves["error"][k_best]]])
    total_var = float(np.var(I))
    yield restyle("variance", [SIGMA_TOTAL, OTSU_VAR], x=[[0, 1], [T_otsu]],
                  y=[[total_var, total_var], [sigma_B2[k_otsu]]])
    yield status((chunks + 1, total), T=T, T_otsu=T_otsu, error=error_T)

    # 3. The error over (T, σ) for the same shapes and the same noise draw ε.
    yield restyle("landscape", [MAP_POINT], x=[[T]], y=[[params.sigma]])
    shown = np.zeros((0, LEVELS))
    for j, start in enumerate(range(0, len(SIGMA_GRID), ROWS_PER_FRAME), start=1):
        if ctx.should_stop():
            return
        sigmas = SIGMA_GRID[start:start + ROWS_PER_FRAME]
        rows, otsu_k, best_k = error_landscape(truth_t, eps, params, sigmas)
        shown = np.concatenate([shown, rows])
        yield restyle("landscape", [MAP], z=[shown.astype(np.float32)],
                      y=[SIGMA_GRID[:len(shown)]])
        yield extend("landscape", [MAP_OTSU, MAP_BEST], x=[x[otsu_k], x[best_k]],
                     y=[sigmas] * 2)
        yield status((chunks + 1 + j, total))

    yield finish(_checks(I, levels, truth, R, T, k_T, curves, sigma_B2, sigma_W2,
                         k_otsu),
                 T=T, T_otsu=T_otsu, T_lowest_error=T_best, error=error_T,
                 error_otsu=float(curves["error"][k_otsu]),
                 error_lowest=float(curves["error"][k_best]),
                 otsu_excess_error=float(curves["error"][k_otsu] - curves["error"][k_best]),
                 iou=float(curves["iou"][k_T]), dice=float(curves["dice"][k_T]),
                 regions=_connected_regions(B), foreground=float(truth.mean()))


def _connected_regions(B: np.ndarray) -> int:
    """N: the connected regions (4-neighbourhood) of B = 1 and of B = 0 together."""
    return int(ndimage.label(B)[1] + ndimage.label(~B)[1])


def _checks(I, levels, truth, R, T, k_T, curves, sigma_B2, sigma_W2,  # noqa: E741
            k_otsu) -> list[Check]:
    n_pix = truth.size
    # (a) Partition: every pixel in exactly one region; the sizes add up and match numpy.
    cover = sum(r.long() for r in R).cpu().numpy()
    sizes = [int(r.sum()) for r in R]
    reference_sizes = [int(np.count_nonzero(I < T)), int(np.count_nonzero(I >= T))]
    defects = int(np.count_nonzero(cover != 1)) + abs(sum(sizes) - n_pix) + sum(
        abs(a - b) for a, b in zip(sizes, reference_sizes, strict=True))

    # (b) σ_W² + σ_B² = σ² for every T; σ² and, at T*, both terms from the pixels (numpy).
    total_var = float(np.var(I))
    mask = levels >= k_otsu
    omega1 = mask.mean()
    within = (1 - omega1) * I[~mask].var() + omega1 * I[mask].var()
    between = (1 - omega1) * omega1 * (I[~mask].mean() - I[mask].mean()) ** 2
    split_error = max(float(np.abs(sigma_B2 + sigma_W2 - total_var).max()),
                      abs(within + between - total_var), abs(between - sigma_B2[k_otsu]))

    # (c) Otsu by brute force over the pixels (no histogram) and by scikit-image.
    brute = np.zeros(LEVELS)
    for k in range(1, LEVELS):
        above = levels >= k
        w1 = above.mean()
        if 0 < w1 < 1:
            brute[k] = (1 - w1) * w1 * (I[~above].mean() - I[above].mean()) ** 2
    brute_gap = abs(float(brute.max()) - float(sigma_B2[k_otsu]))
    # scikit-image splits 8-bit images as l > t, i.e. l ≥ t + 1; one bin is one level.
    k_skimage = int(threshold_otsu(levels.astype(np.uint8))) + 1
    bins_apart = abs(k_skimage - k_otsu)
    tie = abs(brute[min(k_skimage, LEVELS - 1)] - brute[k_otsu]) <= EXACT_TOL * total_var

    # (d) The error at the chosen T, pixel by pixel with numpy.
    error_numpy = float(np.mean((I >= T) != truth))
    return [
        Check(
            name="Thresholds partition the image",
            formula=r"\textstyle\sum_i \mathbf 1[(x,y) \in R_i] = 1\ \forall (x,y),\quad"
            r"\sum_i |R_i| = |I|",
            measured=defects, reference=0, relation="=", passed=defects == 0,
            detail=f"R₁ = {{I < T}} ({sizes[0]} px) and R₂ = {{I ≥ T}} ({sizes[1]} px) cover "
            f"all {n_pix} pixels once; numpy counts {reference_sizes}. Split into connected "
            f"pieces they are N = {_connected_regions(R[1].cpu().numpy())} regions.",
        ),
        Check(
            name="Within- plus between-class variance is the total",
            formula=r"\max_T \big|\sigma_W^2(T) + \sigma_B^2(T) - \sigma^2\big| \le 10^{-12}",
            measured=split_error, reference=EXACT_TOL, relation="<=",
            detail=f"σ² = {total_var:.6g} by numpy over the pixels, against the histogram's "
            f"two terms at all 256 T and the pixels' two terms at T* = {k_otsu}/255 "
            f"(σ_B² = {between:.6g}, σ_W² = {within:.6g}).",
        ),
        Check(
            name="Otsu's T* maximises σ_B² (brute force)",
            formula=r"\big|\sigma_B^2(T^\ast) - \max_{k} \sigma_B^2(k/255)\big| \le 10^{-12}",
            measured=brute_gap, reference=EXACT_TOL, relation="<=",
            detail=f"The run's σ_B²(T*) from the histogram, T* = {k_otsu}/255, against the "
            f"largest ω₀ω₁(μ₀ − μ₁)² computed from the pixels over all 255 splits (at level "
            f"{int(np.argmax(brute))}).",
        ),
        Check(
            name="Otsu's T* agrees with scikit-image",
            formula=r"|T^\ast - T^\ast_{\mathrm{skimage}}| \le \tfrac{1}{255}",
            measured=bins_apart / (LEVELS - 1), reference=1 / (LEVELS - 1), relation="<=",
            passed=bins_apart <= 1 or tie,
            detail=f"skimage.filters.threshold_otsu on the 8-bit image gives level "
            f"{k_skimage - 1} (B = l > t), i.e. T = {k_skimage}/255; the run's T* = "
            f"{k_otsu}/255" + (" (a tie in σ_B²)" if bins_apart > 1 and tie else "") + ".",
        ),
        Check(
            name="Error at T recomputed with numpy",
            formula=r"\tfrac{1}{|I|}\textstyle\sum_{x,y} \mathbf 1[B(x,y) \ne G(x,y)]",
            measured=float(curves["error"][k_T]), reference=error_numpy, relation="=",
            passed=round(curves["error"][k_T] * n_pix) == round(error_numpy * n_pix),
            detail=f"T = {T:.4g}: {int(curves['FP'][k_T])} false positives + "
            f"{int(curves['FN'][k_T])} false negatives from the cumulative class histograms "
            f"against numpy's pixel-wise (I ≥ T) ≠ ground truth G over {n_pix} pixels.",
        ),
    ]


experiment = Experiment(
    slug="thresholding",
    title="Thresholding: B = 1[I ≥ T] against ground truth, and Otsu's T",
    section=Section("2.2", "Image segmentation", chapter="2 Computer vision"),
    summary=(
        "Segment a synthetic image of noisy shapes with a threshold T, by trial and error "
        "against its ground truth (error, IoU and Dice as T sweeps) or by Otsu's rule, which "
        "maximises the between-class variance σ_B²(T) of the histogram; with the error map "
        "over T and the noise σ, where clicking sets both."
    ),
    formulas=FORMULAS,
    Params=ThresholdingParams,
    figures=figures,
    run=run,
    clicks=(ClickInput("landscape", x="T", y="sigma"),),
)
