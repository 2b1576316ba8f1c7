"""Pictures in and out: ``POST /api/uploads`` takes a user's PNG or JPEG, and
``GET /api/runs/{id}/images/{name}.png`` hands out the images a finished run offers.

An upload is checked before a pixel is decoded: the body is capped while it streams in (413),
its type is read from its first bytes, never from its name or Content-Type (415), and its
width × height from the header is capped (413), which is what stops a decompression bomb —
a small file that claims gigapixels. Only then is it decoded (a corrupt file is a 422),
turned to 8-bit gray and shrunk to ``upload_max_side``. What is kept is that gray array,
under an unguessable id; no route serves it back, so one user's picture reaches nobody
else except through the runs they choose to share.
"""

from __future__ import annotations

import io
import secrets
import warnings
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel

from app.jobs import RunManager
from app.settings import Settings
from engine.images import UPLOAD_PREFIX, is_upload, to_gray_uint8, unpack_images

router = APIRouter(prefix="/api", tags=["images"])

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def get_manager(request: Request) -> RunManager:
    return request.app.state.manager


Manager = Annotated[RunManager, Depends(get_manager)]


class Uploaded(BaseModel):
    """An accepted picture: pass ``id`` as an experiment's image parameter."""

    id: str
    width: int
    height: int
    source: dict[str, Any]


def sniff(head: bytes) -> str | None:
    """'PNG' or 'JPEG' from the file's own first bytes, else None."""
    if head.startswith(PNG_MAGIC):
        return "PNG"
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    return None


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = HTTPException(413, f"The upload is larger than the limit of {limit:,} bytes.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_upload(data: bytes, settings: Settings) -> tuple[np.ndarray, dict[str, Any]]:
    """Checked, decoded, gray and shrunk: ``(pixels, {"format", "width", "height"})``."""
    if not data:
        raise HTTPException(422, "The upload is empty; send the PNG or JPEG file as the body.")
    kind = sniff(data[:16])
    if kind is None:
        raise HTTPException(415, "Only PNG and JPEG images are accepted (checked by content).")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns (and later raises) on huge claims; both mean 413.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])
            width, height = image.size
            source = {"format": kind, "width": width, "height": height}
            if width * height > settings.upload_max_pixels:
                raise HTTPException(
                    413, f"The image is {width}×{height} = {width * height:,} pixels; "
                         f"the limit is {settings.upload_max_pixels:,}.")
            side = settings.upload_max_side
            image.draft("L", (side, side))  # JPEG decodes straight at a reduced scale
            image = ImageOps.exif_transpose(image)
            pixels = _gray(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise HTTPException(413, "The image claims too many pixels to decode.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise HTTPException(422, f"The {kind} file could not be decoded: {exc}") from None
    return _shrink(pixels, settings.upload_max_side), source


def _gray(image: Image.Image) -> np.ndarray:
    """8-bit gray, whatever the mode: 16-bit PNGs are scaled, not clipped at 255."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        return to_gray_uint8(np.clip(values / peak, 0.0, 1.0))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    if image.mode == "RGBA":  # transparent parts shown on white, as a browser shows them
        backdrop = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(backdrop, image).convert("RGB")
    return to_gray_uint8(np.asarray(image))


def _shrink(pixels: np.ndarray, side: int) -> np.ndarray:
    height, width = pixels.shape
    if max(height, width) <= side:
        return pixels
    image = Image.fromarray(pixels)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


@router.post(
    "/uploads", status_code=201, summary="Upload a PNG or JPEG picture for the image experiments",
    openapi_extra={"requestBody": {"required": True, "content": {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
    responses={413: {"description": "Too many bytes or too many pixels"},
               415: {"description": "Not a PNG or JPEG file"},
               422: {"description": "Empty or undecodable file"}},
)
async def upload_image(request: Request, manager: Manager) -> Uploaded:
    """The body is the file itself (``Content-Type: image/png`` or ``image/jpeg``; the type is
    checked by content). The answer's ``id`` goes into an image parameter, e.g.
    ``{"experiment": "deblur", "params": {"image": "upload-…"}}``."""
    settings = manager.settings
    data = await read_capped(request, settings.upload_max_bytes)
    pixels, source = await run_in_threadpool(decode_upload, data, settings)
    upload_id = UPLOAD_PREFIX + secrets.token_hex(16)
    if not await run_in_threadpool(manager.store.save_upload, upload_id, pixels,
                                   settings.uploads_kept):
        raise HTTPException(503, "The upload could not be stored; try again later.")
    height, width = pixels.shape
    return Uploaded(id=upload_id, width=width, height=height, source=source)


def resolve_uploads(manager: RunManager, params: dict[str, Any],
                    root: tuple[str, ...] = ("body", "params")) -> dict[str, np.ndarray]:
    """The pixels of every upload the params name; 422 naming the field for an unknown one."""
    found: dict[str, np.ndarray] = {}
    errors = []
    for name, value in params.items():
        if not (isinstance(value, str) and is_upload(value)) or value in found:
            continue
        pixels = manager.store.load_upload(value)
        if pixels is None:
            errors.append({"type": "value_error", "loc": (*root, name), "input": value,
                           "msg": "No such upload (it may have expired); upload the picture "
                                  "again with POST /api/uploads."})
        else:
            found[value] = pixels
    if errors:
        raise RequestValidationError(errors)
    return found


@router.get(
    "/runs/{run_id}/images/{name}.png", summary="Download an image a finished run made",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The image as a PNG file"},
               404: {"description": "No such run, or it offers no image by that name"},
               409: {"description": "The run has not finished"}},
)
def download_image(run_id: str, name: str, manager: Manager) -> Response:
    record = manager.info(run_id)
    if record is None:
        raise HTTPException(404, "Run not found")
    experiment = manager.registry.get(record["experiment"])
    if experiment is None or name not in experiment.downloads:
        offered = list(experiment.downloads) if experiment else []
        raise HTTPException(404, f"This run offers no image {name!r}; it offers {offered}.")
    artifact = manager.artifact(run_id)
    if artifact is None:
        raise HTTPException(409, f"Run is {record['status']}; images come with a finished run.")
    try:
        images = unpack_images(artifact)
    except ValueError:
        images = {}
    if name not in images:
        raise HTTPException(404, f"This run left no image {name!r}.")
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(images[name], dtype=np.uint8)).save(buffer, format="PNG")
    filename = f"{record['experiment']}-{run_id[:8]}-{name}.png"
    return Response(buffer.getvalue(), media_type="image/png",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
