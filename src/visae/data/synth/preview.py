"""preview.png: a grid of samples, each beside its colourised part map, with a legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from visae.atomic import write_with

PART_COLOURS = np.array(
    [[0, 0, 0], [230, 60, 60], [250, 220, 40], [90, 200, 110], [60, 120, 230], [170, 90, 210],
     [40, 220, 230], [250, 140, 30], [255, 255, 255], [150, 150, 150], [120, 60, 30], [200, 200, 90]],
    dtype=np.uint8,
)
"""Colour of each part id in previews (extended cyclically if more parts are added)."""


def colourise(parts_HW: np.ndarray) -> np.ndarray:
    """Part ids -> RGB (H, W, 3) with ``PART_COLOURS``."""
    return PART_COLOURS[parts_HW % len(PART_COLOURS)]


def preview_image(images_BHWC: np.ndarray, parts_BHW: np.ndarray, part_names: list[str], cols: int = 8,
                  zoom: int = 2) -> Image.Image:
    """Grid of (image | part map) pairs, ``cols`` pairs per row, and a part legend below."""
    n, s = len(images_BHWC), images_BHWC.shape[1]
    rows = max(1, -(-n // cols))
    pad = 2
    cell_w, cell_h = 2 * s + pad, s + pad
    legend_h = 14 * (-(-len(part_names) // 5)) + 4
    grid = Image.new("RGB", (cols * cell_w * zoom, rows * cell_h * zoom + legend_h), (32, 32, 32))
    for i in range(n):
        pair = np.concatenate([images_BHWC[i], colourise(parts_BHW[i])], axis=1)
        tile = Image.fromarray(pair).resize((2 * s * zoom, s * zoom), Image.NEAREST)
        grid.paste(tile, ((i % cols) * cell_w * zoom, (i // cols) * cell_h * zoom))
    draw = ImageDraw.Draw(grid)
    y0 = rows * cell_h * zoom + 2
    for k, name in enumerate(part_names):
        x, y = (k % 5) * 110 + 4, y0 + (k // 5) * 14
        draw.rectangle([x, y + 1, x + 10, y + 11], fill=tuple(int(c) for c in PART_COLOURS[k % len(PART_COLOURS)]),
                       outline=(128, 128, 128))
        draw.text((x + 14, y), name, fill=(230, 230, 230))
    return grid


def write_preview(path: Path, images_BHWC: np.ndarray, parts_BHW: np.ndarray, part_names: list[str]) -> None:
    img = preview_image(images_BHWC, parts_BHW, part_names)
    write_with(path, lambda tmp: img.save(tmp, format="PNG"))
