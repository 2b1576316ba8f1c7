"""Uploads (checked before decoding, answered with 413/415/422) and PNG downloads of a run's
images, through an app with the `picture` plug-in."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.client import iter_events
from app.main import create_app
from app.settings import Settings

PICTURE = "tests.plugin_pictures:picture"


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    settings = Settings(db_path=tmp_path_factory.mktemp("db") / "runs.db", workers=1,
                        extra_experiments=[PICTURE], upload_max_bytes=200_000,
                        upload_max_pixels=1_000_000, upload_max_side=64, uploads_kept=3)
    with TestClient(create_app(settings)) as client:
        yield client


def encode(array: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height but whose data is a few bytes: a 'bomb'."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def wait_done(client, run_id: str) -> dict:
    """Follow the run's events to its end, then read its record."""
    list(iter_events(client, f"/api/runs/{run_id}/events"))
    return client.get(f"/api/runs/{run_id}").json()


def upload(client, body: bytes, content_type: str = "image/png"):
    return client.post("/api/uploads", content=body, headers={"Content-Type": content_type})


def gradient(height=40, width=48) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) * 2 % 256).astype(np.uint8)


def test_a_png_upload_is_kept_as_gray_pixels_under_a_fresh_id(app_client):
    answer = upload(app_client, encode(gradient()))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["id"].startswith("upload-") and len(body["id"]) == 7 + 32
    assert (body["width"], body["height"]) == (48, 40)
    assert body["source"] == {"format": "PNG", "width": 48, "height": 40}
    stored = app_client.app.state.manager.store.load_upload(body["id"])
    np.testing.assert_array_equal(stored, gradient())
    assert upload(app_client, encode(gradient())).json()["id"] != body["id"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16"])
def test_colour_palette_alpha_and_16_bit_images_become_8_bit_gray(app_client, mode):
    gray = gradient()
    if mode == "I;16":
        body = encode(gray.astype(np.uint16) * 257)  # a 16-bit gray PNG
    else:
        body = encode(np.stack([gray] * 3, axis=-1)) if mode == "RGB" else None
        if mode == "RGBA":
            body = encode(np.dstack([gray, gray, gray, np.full_like(gray, 255)]))
        if mode == "P":
            buffer = io.BytesIO()
            Image.fromarray(gray).convert("P").save(buffer, format="PNG")
            body = buffer.getvalue()
    answer = upload(app_client, body)
    assert answer.status_code == 201, answer.text
    stored = app_client.app.state.manager.store.load_upload(answer.json()["id"])
    assert np.abs(stored.astype(int) - gray).max() <= 1


def test_jpeg_is_accepted_turned_upright_and_shrunk_to_the_side_limit(app_client):
    photo = np.zeros((90, 160, 3), dtype=np.uint8)
    photo[:, :80] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    answer = upload(app_client, encode(photo, "JPEG", exif=exif, quality=95), "image/jpeg")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["source"] == {"format": "JPEG", "width": 160, "height": 90}
    # Upright it is 90 wide and 160 high; shrunk so the long side is 64.
    assert (body["width"], body["height"]) == (36, 64)
    stored = app_client.app.state.manager.store.load_upload(body["id"])
    assert stored[:28].mean() > 200 and stored[-28:].mean() < 50  # the white half is on top


def test_the_type_is_read_from_the_content_not_the_name_or_header(app_client):
    for body in (b"GIF89a" + b"\x00" * 100, b"just some text", b"<svg></svg>"):
        answer = upload(app_client, body, "image/png")
        assert answer.status_code == 415
        assert "PNG and JPEG" in answer.json()["detail"]
    # A real PNG sent as application/octet-stream is still a PNG.
    assert upload(app_client, encode(gradient()), "application/octet-stream").status_code == 201


def test_too_many_bytes_is_413_whether_declared_or_streamed(app_client):
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * 250_000
    answer = upload(app_client, big)
    assert answer.status_code == 413 and "200,000 bytes" in answer.json()["detail"]

    def chunks():  # no Content-Length: the cap must hold while the body streams in
        for _ in range(30):
            yield b"\x00" * 10_000
    streamed = app_client.post("/api/uploads", content=chunks(),
                               headers={"Content-Type": "image/png"})
    assert streamed.status_code == 413


@pytest.mark.parametrize("width, height", [(1200, 1000), (100_000, 100_000)])
def test_a_pixel_bomb_is_refused_from_its_header(app_client, width, height):
    body = png_header_only(width, height)
    assert len(body) < 200
    answer = upload(app_client, body)
    assert answer.status_code == 413, answer.text
    assert "pixels" in answer.json()["detail"]


def test_empty_and_corrupt_files_are_422(app_client):
    assert upload(app_client, b"").status_code == 422
    truncated = encode(gradient())[:-40]
    answer = upload(app_client, truncated)
    assert answer.status_code == 422 and "could not be decoded" in answer.json()["detail"]
    jpeg = encode(np.stack([gradient()] * 3, -1), "JPEG")
    assert upload(app_client, jpeg[:200], "image/jpeg").status_code == 422


def test_a_run_gets_the_uploaded_pixels_and_offers_its_image_as_png(app_client):
    picture = np.full((32, 32), 77, dtype=np.uint8)
    upload_id = upload(app_client, encode(picture)).json()["id"]
    started = app_client.post("/api/runs", json={"experiment": "picture",
                                                  "params": {"image": upload_id}})
    assert started.status_code == 201, started.text
    record = wait_done(app_client, started.json()["id"])
    assert record["status"] == "done", record
    assert record["params"]["image"] == upload_id
    assert record["metrics"]["mean"] == pytest.approx(77, abs=0.5)

    png = app_client.get(f"/api/runs/{record['id']}/images/picture.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert "attachment" in png.headers["content-disposition"]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content))), picture)
    assert app_client.get(f"/api/runs/{record['id']}/images/other.png").status_code == 404
    assert app_client.get("/api/runs/nope/images/picture.png").status_code == 404


def test_bundled_pictures_need_no_upload(app_client):
    started = app_client.post("/api/runs", json={"experiment": "picture",
                                                  "params": {"image": "camera"}})
    record = wait_done(app_client, started.json()["id"])
    assert record["status"] == "done" and 0 < record["metrics"]["mean"] < 255


def test_unknown_or_malformed_upload_ids_are_422_naming_the_field(app_client):
    for image in ("upload-" + "0" * 32, "upload-../../etc/passwd", "../camera", "nope"):
        answer = app_client.post("/api/runs", json={"experiment": "picture",
                                                     "params": {"image": image}})
        assert answer.status_code == 422, image
        assert answer.json()["detail"][0]["loc"] == ["body", "params", "image"]


def test_uploads_are_never_served_back_and_only_the_newest_are_kept(app_client):
    ids = [upload(app_client, encode(gradient())).json()["id"] for _ in range(4)]
    assert app_client.get(f"/api/uploads/{ids[-1]}").status_code in (404, 405)
    store = app_client.app.state.manager.store
    assert store.load_upload(ids[0]) is None  # uploads_kept=3
    assert all(store.load_upload(i) is not None for i in ids[1:])
