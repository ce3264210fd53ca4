"""High-bit-depth images (16-bit PNG, 32-bit and float TIFF) are scaled to 8 bits, not clipped to white
or black; NaN pixels are refused; a header check tells random bytes from images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visae.data.base import CorruptImage
from visae.data.sources.decode import check_image, decode_image

RAMP_HW = np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
"""A grey ramp from black to white: its 8-bit rendering has mean ~127.5."""


@pytest.mark.parametrize(
    "name, pixels",
    [
        ("ramp16.png", (RAMP_HW * 65535).astype(np.uint16)),  # PIL mode I;16
        ("ramp32.tif", (RAMP_HW * 65535).astype(np.int32)),  # mode I, values of a 16-bit image
        ("unit.tif", RAMP_HW.astype(np.float32)),  # mode F in [0, 1]
        ("kelvin.tif", (200 + 100 * RAMP_HW).astype(np.float32)),  # mode F in physical units: stretched
    ],
)
def test_high_bit_depth_images_keep_their_range(tmp_path, name, pixels):
    Image.fromarray(pixels).save(tmp_path / name)
    rgb_HWC = decode_image(tmp_path / name, name)
    assert rgb_HWC.dtype == np.uint8 and rgb_HWC.shape == (64, 64, 3)
    assert rgb_HWC[0, 0, 0] <= 1 and rgb_HWC[-1, -1, 0] >= 254
    assert abs(float(rgb_HWC.mean()) - 127.5) < 2


def test_eight_bit_grey_in_a_wide_mode_is_kept_as_is(tmp_path):
    Image.fromarray(np.full((8, 8), 100, dtype=np.int32)).save(tmp_path / "grey.tif")
    assert (decode_image(tmp_path / "grey.tif", "grey") == 100).all()


def test_nan_pixels_are_an_unreadable_image(tmp_path):
    pixels = RAMP_HW.astype(np.float32)
    pixels[3, 3] = np.nan
    Image.fromarray(pixels).save(tmp_path / "nan.tif")
    with pytest.raises(CorruptImage, match="NaN or Inf"):
        decode_image(tmp_path / "nan.tif", "nan")


def test_header_check(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    assert check_image(tmp_path / "ok.png") is None
    assert check_image(tmp_path / "noise.jpg") == "not an image file"
    assert check_image(tmp_path / "gone.png") == "file not found"
