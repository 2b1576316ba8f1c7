"""Images for the computer-vision experiments: bundled pictures, the user's uploads, quality.

An experiment names its image with an :func:`image_field` parameter whose value is either a
bundled picture (scikit-image ships them inside its wheel, so nothing is downloaded) or
``upload-<32 hex>``: a picture the user uploaded. The engine never reads uploads from disk or
a database; whoever executes the run resolves them first and hands the pixels over in
``RunContext.uploads`` (8-bit grayscale arrays), which keeps the worker boundary narrow.

Quality is measured with the usual two numbers:

* PSNR :math:`=10\\log_{10}(\\mathrm{peak}^2/\\mathrm{MSE})` in dB, with peak 1 for [0, 1] images;
* SSIM (Wang et al. 2004) :math:`=\\frac{(2\\mu_x\\mu_y+C_1)(2\\sigma_{xy}+C_2)}
  {(\\mu_x^2+\\mu_y^2+C_1)(\\sigma_x^2+\\sigma_y^2+C_2)}`, averaged over Gaussian windows
  (σ = 1.5), :math:`C_1=(0.01L)^2`, :math:`C_2=(0.03L)^2`.
"""

from __future__ import annotations

import io
import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

if TYPE_CHECKING:
    from engine.core import RunContext

# Pictures from skimage.data that are files inside the scikit-image wheel (no pooch fetch).
BUNDLED_IMAGES: dict[str, str] = {
    "camera": "cameraman (512×512)",
    "astronaut": "astronaut Eileen Collins (512×512, colour → gray)",
    "moon": "lunar surface (512×512)",
    "coins": "Greek coins (303×384)",
    "brick": "brick wall texture (512×512)",
    "text": "printed text (172×448)",
    "clock": "clock, motion-blurred (300×400)",
    "checkerboard": "checkerboard (200×200)",
}
UPLOAD_PREFIX = "upload-"
UPLOAD_REF = re.compile(r"^upload-[0-9a-f]{32}$")
IMAGE_REF_PATTERN = (
    "^(" + "|".join(BUNDLED_IMAGES) + r"|upload-[0-9a-f]{32})$"
)
# ITU-R BT.601 luma, the weights Pillow's convert("L") uses, so bundled colour pictures and
# uploaded ones turn gray the same way.
LUMA = (0.299, 0.587, 0.114)


def image_field(default: str = "camera", description: str | None = None) -> Any:
    """A parameter naming the input picture: a bundled name or an upload id.

    The JSON Schema carries ``x-images`` (bundled name → label) so the browser can offer
    them in a list next to an upload button; validation is the pattern alone.
    """
    return Field(
        default,
        pattern=IMAGE_REF_PATTERN,
        max_length=48,
        description=description or (
            "The picture: one bundled with scikit-image, or an upload-… id returned by "
            "POST /api/uploads."
        ),
        json_schema_extra={"x-images": dict(BUNDLED_IMAGES)},
    )


def is_upload(ref: str) -> bool:
    return bool(UPLOAD_REF.match(ref))


@lru_cache(maxsize=len(BUNDLED_IMAGES))
def bundled_image(name: str) -> np.ndarray:
    """A bundled picture as an 8-bit grayscale array (read-only; cached per process)."""
    if name not in BUNDLED_IMAGES:
        raise KeyError(f"no bundled image {name!r}; known: {sorted(BUNDLED_IMAGES)}")
    from skimage import data  # imported lazily: only image experiments pay for it

    pixels = np.asarray(getattr(data, name)())
    gray = to_gray_uint8(pixels)
    gray.setflags(write=False)
    return gray


def to_gray_uint8(pixels: np.ndarray) -> np.ndarray:
    """Any 2-D gray, RGB or RGBA array (uint8, bool or float in [0, 1]) as 8-bit gray."""
    array = np.asarray(pixels)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.ndim == 3:
        rgb = array[..., :3].astype(np.float64)
        array = rgb @ np.asarray(LUMA)
    if array.ndim != 2:
        raise ValueError(f"an image is 2-D (gray) or 3-D (colour), got shape {array.shape}")
    if array.dtype.kind == "f" and array.max(initial=0.0) <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def load_image(ref: str, size: int, ctx: RunContext | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The picture ``ref`` as a ``size``×``size`` tensor in [0, 1] on ``ctx.device``.

    The largest centred square is cut out and resampled with an anti-aliased bilinear filter,
    so every experiment works on square images whatever the source's aspect ratio.
    """
    if is_upload(ref):
        uploads = ctx.uploads if ctx is not None else {}
        if ref not in uploads:
            raise KeyError(f"upload {ref!r} was not handed to this run")
        pixels = np.asarray(uploads[ref])
    else:
        pixels = bundled_image(ref)
    device = ctx.device if ctx is not None else torch.device("cpu")
    # A copy: bundled arrays are read-only and torch wants to own writable memory.
    return square_resize(torch.tensor(np.array(pixels), dtype=dtype) / 255.0, size).to(device)


def square_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop a 2-D tensor to a square and resample it to ``size``×``size``."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[..., top:top + side, left:left + side]
    if side == size:
        return square.clone()
    resized = F.interpolate(square[None, None], size=(size, size), mode="bilinear",
                            align_corners=False, antialias=side > size)
    return resized[0, 0].clamp(0.0, 1.0)


def psnr(estimate: torch.Tensor, reference: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10·log10(peak² / MSE); inf for identical images."""
    mse = torch.mean((estimate.double() - reference.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def _gaussian_window(sigma: float, radius: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(estimate: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0,
         sigma: float = 1.5) -> float:
    """Mean structural similarity over Gaussian windows (Wang et al. 2004).

    Same conventions as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)``: a separable Gaussian of radius ⌊3.5σ+0.5⌋,
    statistics by filtering with reflected borders, and the mean taken over the pixels at
    least one radius from the border.
    """
    x = estimate.double()[None, None]
    y = reference.double()[None, None]
    radius = int(3.5 * sigma + 0.5)
    g = _gaussian_window(sigma, radius, torch.float64).to(x.device)
    kernel_rows, kernel_cols = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        padded = F.pad(t, (radius, radius, radius, radius), mode="reflect")
        return F.conv2d(F.conv2d(padded, kernel_rows), kernel_cols)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    inner = index[..., radius:-radius, radius:-radius] if radius else index
    return inner.mean().item()


def to_display(image: torch.Tensor) -> np.ndarray:
    """An image in [0, 1] as 8-bit gray for a heatmap (values outside are clipped, as any
    viewer would show them); a quarter of the float32 bytes on the wire."""
    return (image.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def gray_heatmap(z: np.ndarray | None = None, name: str = "", **extra: Any) -> dict[str, Any]:
    """A Plotly heatmap trace that shows an 8-bit image in gray, pixel for pixel."""
    return {
        "type": "heatmap", "z": z if z is not None else [[0]], "name": name,
        "colorscale": [[0.0, "black"], [1.0, "white"]], "zmin": 0, "zmax": 255,
        "showscale": False, "hovertemplate": "x %{x}, y %{y}: %{z}<extra>" + name + "</extra>",
        **extra,
    }


def image_axes(**layout: Any) -> dict[str, Any]:
    """Layout for image panels: square pixels, row 0 at the top, no grid."""
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False}
    return {
        "xaxis": {**axis, "constrain": "domain"},
        "yaxis": {**axis, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"},
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        **layout,
    }


def pack_images(**images: np.ndarray) -> bytes:
    """8-bit images as an ``.npz`` artifact (no pickles), e.g. the restored picture that
    the page offers for download; :func:`unpack_images` reads it back."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(a, dtype=np.uint8)
                                   for name, a in images.items()})
    return buffer.getvalue()


def unpack_images(artifact: bytes) -> dict[str, np.ndarray]:
    """The images :func:`pack_images` stored; ``ValueError`` when the bytes are not such."""
    try:
        with np.load(io.BytesIO(artifact), allow_pickle=False) as archive:
            images = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, AttributeError) as exc:
        raise ValueError("the artifact is not an image archive") from exc
    # Any zip loads as an archive (torch.save writes one); only arrays make it an image one.
    if not images or not all(isinstance(a, np.ndarray) for a in images.values()):
        raise ValueError("the artifact is not an image archive")
    return images
