"""Heatmap overlays: a latent's activation map, upsampled over the image the model saw.

The map (grid_H x grid_W, a CNN feature map or a ViT patch grid) is upsampled bilinearly to
the preprocessed image (resized and centre-cropped as the backbone saw it), coloured with a
small built-in colormap, blended over the image, and the cells at or above half of the LATENT's
max activation (over all analysed images) are outlined, so the colours and the boxes of a latent's
top images share one scale and a box never marks a cell that is only strong for its own image. An
image that cannot be read renders as a grey placeholder with the same overlay.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

_ANCHORS = np.array(
    [  # value, r, g, b  -- an 'inferno'-like ramp: black -> purple -> orange -> pale yellow
        [0.00, 0, 0, 4],
        [0.25, 87, 16, 110],
        [0.50, 188, 55, 84],
        [0.75, 249, 142, 9],
        [1.00, 252, 255, 164],
    ],
    dtype=np.float64,
)
LUT = np.stack([np.interp(np.linspace(0, 1, 256), _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], 1).astype(np.uint8)
"""256 x 3 colour lookup table."""

OUTLINE = (0, 255, 255)
MAX_OUTLINED = 6
"""At most this many cells are outlined on one image (the strongest)."""
BOX_REL = 0.5
"""A cell is outlined when its activation is at least this share of the latent's max activation."""
PLACEHOLDER_GREY = 128


def colorize(v_HW: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (H, W, 3) uint8 colours."""
    return LUT[np.clip(np.round(v_HW * 255), 0, 255).astype(np.int64)]


def upsample(map_hw: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a grid map to size x size (each cell's value at its centre)."""
    t = torch.as_tensor(np.asarray(map_hw, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def top_cells(map_hw: np.ndarray, vmax: float, n: int = MAX_OUTLINED, rel: float = BOX_REL) -> list[tuple[int, int]]:
    """The cells to outline: at most n, strongest first, each > 0 and >= rel * ``vmax`` (the latent's max)."""
    flat = np.nan_to_num(np.asarray(map_hw, dtype=np.float64)).ravel()
    bar = max(rel * float(vmax), 0.0)
    order = np.argsort(-flat, kind="stable")[:n]
    return [tuple(divmod(int(i), map_hw.shape[1])) for i in order if flat[i] > 0 and flat[i] >= bar]


def render(view_HWC: np.ndarray | None, map_hw: np.ndarray, vmax: float, size: int = 160) -> Image.Image:
    """The overlay as a size x size RGB image.

    ``view_HWC`` is the preprocessed image (None: grey placeholder); ``vmax`` is the value
    that maps to the top of the colormap and the reference of the outlines (the latent's max
    activation, so the top images of one latent share a scale).
    """
    if view_HWC is None:
        base = Image.new("RGB", (size, size), (PLACEHOLDER_GREY,) * 3)
        ImageDraw.Draw(base).text((4, 4), "image missing", fill=(230, 230, 230))
    else:
        base = Image.fromarray(view_HWC).convert("RGB").resize((size, size), Image.BILINEAR)
    map_hw = np.nan_to_num(np.asarray(map_hw, dtype=np.float32))
    v_HW = np.clip(upsample(map_hw, size) / max(float(vmax), 1e-12), 0, 1)
    alpha_HW1 = (0.15 + 0.7 * v_HW)[..., None]
    img = np.asarray(base, dtype=np.float32) * 0.75  # dim the photo a little so colour reads
    blend = img * (1 - alpha_HW1) + colorize(v_HW).astype(np.float32) * alpha_HW1
    out = Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8))
    _outline(out, map_hw, vmax, size)
    return out


def _outline(img: Image.Image, map_hw: np.ndarray, vmax: float, size: int) -> None:
    h, w = map_hw.shape
    if h * w <= 1:
        return
    draw = ImageDraw.Draw(img)
    for y, x in top_cells(map_hw, vmax):
        box = (x * size / w, y * size / h, (x + 1) * size / w - 1, (y + 1) * size / h - 1)
        draw.rectangle(box, outline=OUTLINE, width=max(1, size // 100))


def colour_bar(width: int = 240, height: int = 14) -> Image.Image:
    """The colour scale as a horizontal bar, 0 (left) to the latent's max activation (right)."""
    ramp_W = colorize(np.linspace(0, 1, width))
    return Image.fromarray(np.repeat(ramp_W[None], height, axis=0))
