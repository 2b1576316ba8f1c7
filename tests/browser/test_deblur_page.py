"""Deblurring one's own picture in Debian's Chromium: upload it (and a bad file), run, see
the restorations and download the result."""

import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser


def picture_png() -> bytes:
    """A picture no bundled one resembles: a bright frame and a dark cross on mid-gray."""
    pixels = np.full((120, 160), 128, dtype=np.uint8)
    pixels[10:110, 30:130] = 230
    pixels[55:65, :] = 20
    pixels[:, 75:85] = 20
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_deblur_and_download(page, console_errors):
    page.goto("/e/deblur?size=64&rl_iterations=20")
    file_input = page.locator("#param-image-file")

    # A text file named .png is refused by content; the message sits under the field.
    file_input.set_input_files({"name": "notes.png", "mimeType": "image/png",
                                "buffer": b"not really a picture"})
    error = page.locator("[data-field=image] .field-error")
    error.wait_for(state="visible")
    assert "PNG and JPEG" in error.inner_text()

    file_input.set_input_files({"name": "cross.png", "mimeType": "image/png",
                                "buffer": picture_png()})
    page.wait_for_function("new URLSearchParams(location.search).get('image')"
                           "?.startsWith('upload-') === true")
    select = page.locator("#param-image")
    upload_id = select.input_value()
    assert "cross.png (160×120)" in select.locator("option:checked").inner_text()
    assert error.is_hidden()

    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=60_000)
    passed = page.eval_on_selector_all("[data-role=checks] tbody tr",
                                       "rows => rows.map(r => r.dataset.passed)")
    assert passed and set(passed) == {"true"}, passed
    heatmaps = page.evaluate(
        "() => document.querySelector(\"[data-figure='images']\").data"
        ".filter(t => t.type === 'heatmap').length")
    assert heatmaps >= 4

    link = page.locator("[data-role=downloads] a[data-image=restored]")
    assert link.is_visible()
    response = page.request.get(link.get_attribute("href"))
    assert response.ok and response.headers["content-type"] == "image/png"
    restored = np.asarray(Image.open(io.BytesIO(response.body())), dtype=np.float64)
    assert restored.shape == (64, 64)
    # The run restored the upload: the result follows the cross's centre square.
    original = np.asarray(Image.open(io.BytesIO(picture_png())).crop((20, 0, 140, 120))
                          .resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64)
    assert np.corrcoef(restored.ravel(), original.ravel())[0, 1] > 0.8

    # A shared link names the same upload.
    page.reload()
    assert page.locator("#param-image").input_value() == upload_id
    # Chromium logs the refused upload's 415 itself; nothing else may go wrong.
    assert [e for e in console_errors if "status of 415" not in e] == []
