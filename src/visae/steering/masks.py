"""Part masks of your own: a folder of label PNGs aligned with the images, for the segmentation protocol.

For image id ``a/b.jpg`` the mask is ``MASKS/a/b.png`` (same relative path, ``.png`` suffix): an
8-bit single-channel PNG (mode L or P) of the image's size whose pixel values are part ids,
0 = background. ``MASKS/parts.json``, a JSON list of names (index = id), names the parts; without
it id 0 is 'background' and id i 'part_<i>'. Each mask becomes the majority part of every grid
cell, with the image's own resize and crop (``visae.analysis.parts.cell_parts``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from visae.analysis.parts import cell_parts
from visae.errors import VisaeError

PARTS_FILE = "parts.json"
NAMES_HINT = 'write it as a JSON list of names, index = part id, e.g. ["background", "wing"]'
MODES = ("L", "P")
"""PIL modes of 8-bit single-channel PNGs (P: the palette index is the part id)."""


def mask_path(mask_dir: Path, image_id: str) -> Path:
    """``mask_dir / image_id`` with a ``.png`` suffix; refused when the id would leave the folder."""
    rel = Path(image_id).with_suffix(".png")
    if rel.is_absolute() or ".." in rel.parts:
        raise VisaeError(f"image id '{image_id}' is not a relative path inside the mask folder", "use masks named after image ids")
    return mask_dir / rel


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``parts_HW`` (uint8) of one label PNG; ``size`` (h, w), when given, must be the mask's."""
    if not path.is_file():
        raise VisaeError(f"no mask {path}", "give every image a label PNG at the same relative path, with a .png suffix")
    try:
        with Image.open(path) as img:
            img.load()
            mode, parts_HW = img.mode, np.asarray(img)
    except (UnidentifiedImageError, OSError) as e:
        raise VisaeError(f"mask {path} is not a readable image ({e.__class__.__name__})", "write it as an 8-bit PNG of part ids") from None
    if mode not in MODES or parts_HW.ndim != 2:
        raise VisaeError(f"mask {path} is a {mode} image, not 8-bit single-channel",
                         "save it in mode L (grey levels = part ids, 0 = background)")  # fmt: skip
    if size is not None and tuple(parts_HW.shape) != tuple(size):
        raise VisaeError(f"mask {path} is {parts_HW.shape[0]}x{parts_HW.shape[1]} but its image is {size[0]}x{size[1]}",
                         "give each mask its image's size (h x w)")  # fmt: skip
    return parts_HW


def read_part_names(mask_dir: Path, n_parts: int) -> list[str]:
    """Names of part ids 0 .. n_parts−1: ``parts.json`` where present, else 'background' and 'part_<id>'."""
    names: list[str] = []
    f = mask_dir / PARTS_FILE
    if f.is_file():
        try:
            names = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VisaeError(f"{f} is not valid JSON ({e.__class__.__name__})", NAMES_HINT) from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise VisaeError(f"{f} is not a JSON list of names", NAMES_HINT)
    return names + ["background" if i == 0 else f"part_{i}" for i in range(len(names), n_parts)]


def folder_masks(mask_dir: str | Path, image_ids: Sequence[str], preprocess: Any, grid: tuple[int, int],
                 sizes: Sequence[tuple[int, int]] | None = None) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """(parts_BG, part_names): the majority part of every grid cell of each image (row-major), from the
    label PNGs of ``mask_dir``; ``sizes`` ((h, w) per image), when given, must match the masks."""
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise VisaeError(f"mask folder {mask_dir} does not exist", "pass a folder of label PNGs named after the image ids")
    if sizes is not None and len(sizes) != len(image_ids):
        raise VisaeError(f"{len(sizes)} image sizes for {len(image_ids)} images", "pass one (h, w) per image")
    parts, n_parts = [], 1
    for b, image_id in enumerate(image_ids):
        parts_HW = read_mask(mask_path(mask_dir, image_id), None if sizes is None else sizes[b])
        n_parts = max(n_parts, int(parts_HW.max()) + 1)
        parts.append(cell_parts(parts_HW, preprocess, *grid))
    parts_BG = np.stack(parts) if parts else np.zeros((0, grid[0] * grid[1]), dtype=np.int64)
    return parts_BG, read_part_names(mask_dir, n_parts)
