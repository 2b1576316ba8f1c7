"""engine.images against independent references: scikit-image's SSIM, Pillow's gray
conversion, the PSNR of known noise."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from engine.core import RunContext
from engine.images import (
    BUNDLED_IMAGES,
    bundled_image,
    is_upload,
    load_image,
    pack_images,
    psnr,
    ssim,
    to_gray_uint8,
    unpack_images,
)

UPLOAD = "upload-" + "ab" * 16


@pytest.mark.parametrize("name", sorted(BUNDLED_IMAGES))
def test_every_bundled_picture_loads_as_a_square_in_the_unit_interval(name):
    image = load_image(name, 48)
    assert image.shape == (48, 48) and image.dtype == torch.float32
    assert 0.0 <= image.min().item() < image.max().item() <= 1.0
    assert bundled_image(name).dtype == np.uint8 and not bundled_image(name).flags.writeable


def test_load_image_crops_the_centre_square_before_resizing():
    wide = np.zeros((10, 30), dtype=np.uint8)
    wide[:, 10:20] = 255  # the centre square is white, the sides black
    image = load_image(UPLOAD, 10, RunContext(device="cpu", uploads={UPLOAD: wide}),
                       dtype=torch.float64)
    assert torch.equal(image, torch.ones(10, 10, dtype=torch.float64))


def test_uploads_come_only_from_the_run_context():
    with pytest.raises(KeyError, match="not handed"):
        load_image(UPLOAD, 8, RunContext(device="cpu"))
    assert is_upload(UPLOAD) and not is_upload("camera") and not is_upload("upload-../x")


def test_gray_uses_the_same_luma_as_pillow():
    rgb = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert np.abs(to_gray_uint8(rgb).astype(int) - pillow).max() <= 1
    assert to_gray_uint8(np.array([[True, False]])).tolist() == [[255, 0]]


def test_psnr_of_gaussian_noise_is_minus_20_log10_sigma():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(256, 256, generator=generator, dtype=torch.float64)
    sigma = 0.05
    noisy = clean + sigma * torch.randn(256, 256, generator=generator, dtype=torch.float64)
    assert psnr(noisy, clean) == pytest.approx(-20 * math.log10(sigma), abs=0.1)
    assert psnr(clean, clean) == math.inf


@pytest.mark.parametrize("sigma_noise", [0.01, 0.1, 0.3])
def test_ssim_matches_scikit_image(sigma_noise):
    generator = torch.Generator().manual_seed(1)
    clean = load_image("camera", 96, dtype=torch.float64)
    noisy = (clean + sigma_noise * torch.randn(96, 96, generator=generator,
                                               dtype=torch.float64)).clamp(0, 1)
    reference = structural_similarity(noisy.numpy(), clean.numpy(), data_range=1.0,
                                      gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ssim(noisy, clean) == pytest.approx(reference, abs=1e-10)
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-12)


def test_image_artifacts_round_trip_and_refuse_other_bytes():
    images = {"restored": np.arange(12, dtype=np.uint8).reshape(3, 4)}
    back = unpack_images(pack_images(**images))
    np.testing.assert_array_equal(back["restored"], images["restored"])
    with pytest.raises(ValueError, match="not an image archive"):
        unpack_images(b"not an npz")
    weights = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, weights)  # also a zip file, but not of images
    with pytest.raises(ValueError, match="not an image archive"):
        unpack_images(weights.getvalue())
