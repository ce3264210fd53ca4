"""Decode one image file (or its bytes) to RGB uint8, or raise ``CorruptImage``.

Every file-backed source decodes through here, so a truncated JPEG/PNG, a file that is not
an image and a decompression bomb all become the same ``CorruptImage`` the loader skips.
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
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise CorruptImage(image_id, "file not found") from None
    except _DECODE_ERRORS as e:
        raise CorruptImage(image_id, _reason(e)) from None
    if rgb.width == 0 or rgb.height == 0:
        raise CorruptImage(image_id, "empty image")
    return np.asarray(rgb, dtype=np.uint8)


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if text.startswith("cannot identify image file"):
        return "not an image file"
    if text.startswith("image file is truncated"):
        return "truncated file"
    return text.splitlines()[0][:200]
