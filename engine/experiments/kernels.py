r"""2.2 Important kernels: the table shared by the filters and Fourier experiments.

The cheat sheet's table, corrected per ERRATA.md G-2.2-3 and written as **correlation**
kernels (flip both axes for convolution):

.. math:: \text{Laplacian}=\begin{bmatrix}0&1&0\\1&-4&1\\0&1&0\end{bmatrix},\quad
          \text{Prewitt}_x=\begin{bmatrix}-1&0&1\\-1&0&1\\-1&0&1\end{bmatrix},\quad
          \text{Sobel}_x=\begin{bmatrix}-1&0&1\\-2&0&2\\-1&0&1\end{bmatrix},

.. math:: \text{Box}=\tfrac19\mathbf 1_{3\times3},\quad \text{High-pass}=\delta-\text{Box},\quad
          \text{Diff}_x=[-1\ \ 1],\quad \text{Diff}_y=[-1\ \ 1]^\top,\quad
          G_\sigma(x,y)=\tfrac1{2\pi\sigma^2}e^{-\frac{x^2+y^2}{2\sigma^2}},

with the y-kernels the transposes of the x-kernels; Prewitt/6 and Sobel/8 estimate
:math:`\partial_x I` (Gonzalez & Woods, *Digital Image Processing*, §3.6 and §10.2).

Correlation follows ``scipy.ndimage.correlate``: a kernel k of shape (h, w) has its origin at
:math:`c = (\lfloor h/2\rfloor, \lfloor w/2\rfloor)` and

.. math:: (k \star I)[p] = \sum_j k[j]\, I[p + j - c],

so Diff_x = [−1 1] gives the backward difference :math:`I[x] - I[x-1]`. On a ramp
:math:`I = ax + by` every kernel gives :math:`(\sum k)\,I + a M_x + b M_y` with the first
moments :math:`M_x = \sum_j k[j](j_x - c_x)` (8 for Sobel_x, 6 for Prewitt_x, 1 for Diff_x).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

KernelName = Literal["laplacian", "prewitt_x", "prewitt_y", "sobel_x", "sobel_y", "gaussian",
                     "box", "high_pass", "diff_x", "diff_y"]
Boundary = Literal["mirror", "nearest", "wrap", "constant"]

LABELS: dict[str, str] = {
    "laplacian": "Laplacian", "prewitt_x": "Prewitt_x", "prewitt_y": "Prewitt_y",
    "sobel_x": "Sobel_x", "sobel_y": "Sobel_y", "gaussian": "Gaussian G_σ", "box": "Box (mean)",
    "high_pass": "High-pass δ − Box", "diff_x": "Diff_x [−1 1]", "diff_y": "Diff_y [−1 1]ᵀ",
    "custom": "custom",
}

LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
PREWITT_X = np.array([[-1.0, 0.0, 1.0]] * 3)
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
DIFF_X = np.array([[-1.0, 1.0]])

# torch's padding for each scipy.ndimage boundary mode: scipy's "mirror" (d c b | a b c d) is
# torch's "reflect"; scipy's own "reflect" repeats the edge pixel and has no torch pad mode.
PAD_MODE: dict[str, str] = {"mirror": "reflect", "nearest": "replicate", "wrap": "circular",
                            "constant": "constant"}

CUSTOM_MAX = 100.0  # bound on each entry of a custom kernel
CUSTOM_PATTERN = r"^[0-9eE+\-., ;]*$"
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def gaussian_radius(sigma: float) -> int:
    """The half-width ⌊4σ + ½⌋ that scipy.ndimage.gaussian_filter uses (truncate = 4): the
    sampled G_σ then sums to 1 within ~10⁻⁴ for σ ≥ 0.8, where ⌈3σ⌉ would lose up to 3·10⁻³."""
    return int(4.0 * sigma + 0.5)


def gaussian(sigma: float, radius: int | None = None) -> np.ndarray:
    """G_σ sampled on the integer grid |x|, |y| ≤ radius, not renormalised (the sheet's formula)."""
    r = gaussian_radius(sigma) if radius is None else radius
    x = np.arange(-r, r + 1, dtype=np.float64)
    sq = x[None, :] ** 2 + x[:, None] ** 2
    return np.exp(-sq / (2 * sigma**2)) / (2 * math.pi * sigma**2)


def box(size: int) -> np.ndarray:
    """The mean over a size×size window: 1/size² everywhere."""
    check_odd("box_size", size)
    return np.full((size, size), 1.0 / size**2)


def delta(size: int) -> np.ndarray:
    """The discrete Dirac δ: 1 at the centre of a size×size kernel, the correlation identity."""
    check_odd("size", size)
    d = np.zeros((size, size))
    d[size // 2, size // 2] = 1.0
    return d


def high_pass(size: int) -> np.ndarray:
    """δ − Box: what the mean filter takes away."""
    return delta(size) - box(size)


def check_odd(name: str, size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"{name} must be odd, got {size}")


def kernel(name: str, sigma: float = 1.0, box_size: int = 3) -> np.ndarray:
    """A table kernel by name (float64, correlation form)."""
    table = {
        "laplacian": lambda: LAPLACIAN, "prewitt_x": lambda: PREWITT_X,
        "prewitt_y": lambda: PREWITT_X.T, "sobel_x": lambda: SOBEL_X,
        "sobel_y": lambda: SOBEL_X.T, "gaussian": lambda: gaussian(sigma),
        "box": lambda: box(box_size), "high_pass": lambda: high_pass(box_size),
        "diff_x": lambda: DIFF_X, "diff_y": lambda: DIFF_X.T,
    }
    if name not in table:
        raise ValueError(f"kernel must be one of {sorted(table)}, got {name!r}")
    return np.array(table[name](), dtype=np.float64)


def parse_kernel(text: str) -> np.ndarray:
    """Numbers separated by spaces or commas, rows optionally by ``;``: 9 (3×3) or 25 (5×5).

    Each token must look like a decimal number and lie in [−100, 100]; nothing is evaluated.
    """
    rows = [row for row in text.split(";") if row.strip()]
    tokens = [[t for t in re.split(r"[,\s]+", row.strip()) if t] for row in rows]
    flat = [t for row in tokens for t in row]
    for t in flat:
        if not _NUMBER.match(t):
            raise ValueError(f"custom_kernel entries must be plain numbers, got {t!r}")
    if len(flat) not in (9, 25):
        raise ValueError(f"custom_kernel needs 9 (3×3) or 25 (5×5) numbers, got {len(flat)}")
    side = int(math.isqrt(len(flat)))
    if len(tokens) > 1 and (len(tokens) != side or any(len(row) != side for row in tokens)):
        raise ValueError(f"custom_kernel rows must be {side} rows of {side} numbers, got rows "
                         f"of {[len(row) for row in tokens]}")
    values = np.array([float(t) for t in flat]).reshape(side, side)
    if np.abs(values).max() > CUSTOM_MAX:
        raise ValueError(f"custom_kernel entries must lie in [−{CUSTOM_MAX:g}, {CUSTOM_MAX:g}], "
                         f"got {values.flat[np.abs(values).argmax()]:g}")
    return values


def origin(k: np.ndarray | Tensor) -> tuple[int, int]:
    """scipy.ndimage's origin of a kernel: (⌊h/2⌋, ⌊w/2⌋)."""
    h, w = k.shape[-2:]
    return h // 2, w // 2


def correlate(image: Tensor, k: Tensor, boundary: Boundary,
              at: tuple[int, int] | None = None) -> Tensor:
    """(H, W) ⋆ (h, w) → (H, W) with F.conv2d: out[p] = Σ_j k[j] I[p + j − at].

    ``at`` is the kernel's origin (scipy's by default); the image is padded per ``boundary``.
    """
    h, w = k.shape
    top, left = origin(k) if at is None else at
    pad = (left, w - 1 - left, top, h - 1 - top)
    padded = F.pad(image[None, None], pad, mode=PAD_MODE[boundary])
    with ieee_float32():
        return F.conv2d(padded, k.to(image)[None, None])[0, 0]


@contextmanager
def ieee_float32() -> Iterator[None]:
    """cuDNN runs float32 convolutions in TF32 (a 10-bit mantissa) by default on Ampere and
    newer GPUs; the checks hold float32 results to 1e-5, so ask for IEEE float32 here."""
    cudnn = torch.backends.cudnn
    if not torch.cuda.is_available():
        yield
        return
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                     deterministic=cudnn.deterministic, allow_tf32=False):
        yield


def convolve(image: Tensor, k: Tensor, boundary: Boundary) -> Tensor:
    """(k * I)[p] = Σ_j k[j] I[p − j + c]: correlation with the flipped kernel about c."""
    h, w = k.shape
    cy, cx = origin(k)
    return correlate(image, torch.flip(k, (0, 1)), boundary, at=(h - 1 - cy, w - 1 - cx))


def correlate_valid(image: Tensor, k: Tensor) -> Tensor:
    """Correlation without padding: only the outputs whose window lies inside the image."""
    with ieee_float32():
        return F.conv2d(image[None, None], k.to(image)[None, None])[0, 0]


def moments(k: np.ndarray) -> tuple[float, float, float]:
    """(Σk, M_x, M_y) with M_x = Σ_j k[j](j_x − c_x): on a ramp ax + by, k ⋆ I = (Σk) I +
    a M_x + b M_y."""
    cy, cx = origin(k)
    ys, xs = np.indices(k.shape)
    return float(k.sum()), float((k * (xs - cx)).sum()), float((k * (ys - cy)).sum())


def embed(k: np.ndarray, n: int) -> np.ndarray:
    """k zero-padded to n×n with its origin moved to [0, 0] (circularly): k̃[(j − c) mod n] =
    k[j], the array whose DFT is the kernel's frequency response."""
    cy, cx = origin(k)
    if max(k.shape) > n:
        raise ValueError(f"a {k.shape[0]}×{k.shape[1]} kernel does not fit a {n}×{n} image")
    out = np.zeros((n, n), dtype=k.dtype)
    ys, xs = np.indices(k.shape)
    out[(ys - cy) % n, (xs - cx) % n] = k
    return out


def ramp(n: int, a: float, b: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """I[y, x] = a x + b y on an n×n grid (x the column, y the row, growing downwards)."""
    y, x = torch.meshgrid(torch.arange(n, dtype=dtype), torch.arange(n, dtype=dtype),
                          indexing="ij")
    return a * x + b * y


# ----------------------------------------------------------------------------------------------
# Display: filtered images go over the wire as 8-bit heatmaps (see engine.images).

# Blue below zero, white at zero, red above: the scale for signed outputs and kernels.
DIVERGING = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]


def is_signed(k: np.ndarray) -> bool:
    """A kernel with a negative entry can turn an image in [0, 1] into negative values."""
    return bool((k < 0).any())


def signed_to_display(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Signed values as 8-bit levels around the middle: 0 ↦ 127.5, ±m ↦ 0 and 255 with
    m = max|z|; returns the levels and m (for the colour bar's labels)."""
    m = float(np.abs(z).max())
    levels = 127.5 + 127.5 * z / (m if m > 0 else 1.0)
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8), m


def signed_ticks(m: float) -> list[str]:
    """Colour-bar labels at levels 0, 127.5 and 255 for :func:`signed_to_display`."""
    return [f"{-m:.3g}", "0", f"{m:.3g}"]


def signed_heatmap(name: str = "", m: float = 1.0) -> dict:
    """A heatmap trace for :func:`signed_to_display` levels on the diverging scale."""
    return {
        "type": "heatmap", "z": [[127.5]], "name": name, "colorscale": DIVERGING,
        "zmin": 0, "zmax": 255, "showscale": True,
        "colorbar": {"tickvals": [0, 127.5, 255], "ticktext": signed_ticks(m), "len": 0.8},
        "hovertemplate": "x %{x}, y %{y}: level %{z}<extra>" + name + "</extra>",
    }


def to_levels(z: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values in [lo, hi] as 8-bit levels 0 … 255 (spectra go over the wire like images)."""
    scaled = 255 * (z - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def level_ticks(lo: float, hi: float, count: int = 5) -> tuple[list[float], list[str]]:
    """Colour-bar ticks for :func:`to_levels`: ``count`` evenly spaced values of [lo, hi]."""
    values = np.linspace(lo, hi, count)
    return [float(v) for v in np.linspace(0, 255, count)], [f"{v:.3g}" for v in values]
