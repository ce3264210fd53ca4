"""Image preprocessing: HWC uint8 -> normalised CHW float, as a backbone expects it.

Backbones build a ``Preprocess`` from their own config (image processor, timm data
config); users can override any field. ``batch`` is vectorised for array-backed sources.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(BaseModel):
    """Resize (and optionally centre-crop) to ``size`` x ``size``, scale to [0,1], normalise."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    size: int = 224
    """Side of the square input the model takes, in pixels."""
    crop_pct: float = 1.0
    """Resize the shorter side to size / crop_pct, then centre-crop size x size (1.0: no crop margin)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean subtracted after scaling to [0, 1]."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel std divided after subtracting the mean."""
    resample: Literal["bilinear", "bicubic", "nearest"] = "bicubic"
    """Interpolation used to resize."""

    def geometry(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(resized_h, resized_w, crop_top, crop_left) for an h x w image."""
        short = round(self.size / self.crop_pct)
        scale = short / min(h, w)
        rh, rw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        return rh, rw, (rh - self.size) // 2, (rw - self.size) // 2

    def __call__(self, image_HWC: np.ndarray) -> torch.Tensor:
        """One image -> normalised (3, size, size) float32 tensor."""
        h, w = image_HWC.shape[:2]
        rh, rw, top, left = self.geometry(h, w)
        if (rh, rw) != (h, w):
            resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[self.resample]
            image_HWC = np.asarray(Image.fromarray(image_HWC).resize((rw, rh), resample))
        image_HWC = image_HWC[top : top + self.size, left : left + self.size]
        return self._normalise(torch.from_numpy(np.array(image_HWC, dtype=np.uint8)).permute(2, 0, 1)[None])[0]

    def batch(self, images_BHWC: np.ndarray) -> torch.Tensor:
        """A batch of same-sized images -> (B, 3, size, size), resized with torch (fast path)."""
        x_BCHW = torch.from_numpy(np.array(images_BHWC, dtype=np.uint8)).permute(0, 3, 1, 2)
        h, w = x_BCHW.shape[-2:]
        rh, rw, top, left = self.geometry(h, w)
        if (rh, rw) != (h, w):
            mode = "bicubic" if self.resample == "bicubic" else self.resample
            kw = {"align_corners": False, "antialias": True} if mode != "nearest" else {}
            x_BCHW = F.interpolate(x_BCHW.float(), size=(rh, rw), mode=mode, **kw).clamp_(0, 255)
        x_BCHW = x_BCHW[..., top : top + self.size, left : left + self.size]
        return self._normalise(x_BCHW)

    def _normalise(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x_BCHW.float() / 255.0 - mean) / std

    def crop_box(self, h: int, w: int) -> tuple[float, float, float, float]:
        """The region of the original h x w image the model sees: (top, left, height, width) in pixels.

        Heatmaps over the original image use it to place the token grid.
        """
        rh, rw, top, left = self.geometry(h, w)
        sy, sx = h / rh, w / rw
        return top * sy, left * sx, self.size * sy, self.size * sx
