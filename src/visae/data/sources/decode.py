"""Decode one image file (or its bytes) to RGB uint8, or raise ``CorruptImage``.

Every file-backed source decodes through here, so a truncated JPEG/PNG, a file that is not
an image and a decompression bomb all become the same ``CorruptImage`` the loader skips.
16-bit and float images are scaled to 8 bits by their bit depth or range (``to_rgb8``), not
clipped by PIL's ``convert``.
PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False (its default) for truncated files
to be caught: with it set, PIL pads them with grey instead of failing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from visae.data.base import CorruptImage

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
"""File suffixes (lower case) that sources treat as images; anything else is ignored."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def is_image_file(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def decode_image(
    source: str | Path | bytes,
    image_id: str,
    crop: Callable[[Image.Image], Image.Image] | None = None,
) -> np.ndarray:
    """A path or encoded bytes -> (H, W, 3) uint8 RGB; ``crop`` may cut the decoded image."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()  # decodes every pixel now, so truncation fails here and not later
            if crop is not None:
                im = crop(im)
            rgb_HWC = to_rgb8(im)
    except FileNotFoundError:
        raise CorruptImage(image_id, "file not found") from None
    except _DECODE_ERRORS as e:
        raise CorruptImage(image_id, _reason(e)) from None
    if rgb_HWC.shape[0] == 0 or rgb_HWC.shape[1] == 0:
        raise CorruptImage(image_id, "empty image")
    return rgb_HWC


def check_image(source: str | Path | bytes) -> str | None:
    """Why ``source`` is not a readable image, or None: a header check (and PIL's ``verify``, which
    reads a PNG's chunks without decompressing them), far cheaper than ``decode_image``."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.width == 0 or im.height == 0:
                return "empty image"
            im.verify()
    except FileNotFoundError:
        return "file not found"
    except _DECODE_ERRORS as e:
        return _reason(e)
    return None


def to_rgb8(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded image, high-bit-depth modes scaled rather than clipped.

    PIL's ``convert("RGB")`` clips 16-bit and 32-bit grey values at 255 (almost all white) and
    float values too (a float image in [0, 1] comes out black). Here 16-bit modes are scaled by
    their bit depth (65535 -> 255); 32-bit integer ('I') and float ('F') images by their range:
    values already in [0, 255] are kept, integers in [0, 65535] scaled as 16-bit, floats in
    [0, 1] multiplied by 255, and anything else stretched from its min..max. NaN/Inf pixels are
    refused (``ValueError``, which the caller reports as an unreadable image).
    """
    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    grey_HW = np.asarray(im, dtype=np.float64)
    if not np.isfinite(grey_HW).all():
        raise ValueError(f"{im.mode} image with NaN or Inf pixels")
    lo, hi = (float(grey_HW.min()), float(grey_HW.max())) if grey_HW.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and 255 < hi <= 65535):
        grey_HW = grey_HW * (255 / 65535)
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        grey_HW = grey_HW * 255
    elif lo < 0 or hi > 255:
        grey_HW = (grey_HW - lo) * (255 / (hi - lo) if hi > lo else 0.0)
    grey_HW = np.rint(grey_HW).clip(0, 255).astype(np.uint8)
    return np.repeat(grey_HW[..., None], 3, axis=2)


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if text.startswith("cannot identify image file"):
        return "not an image file"
    if text.startswith(("image file is truncated", "Truncated File Read")):
        return "truncated file"
    return text.splitlines()[0][:200]
