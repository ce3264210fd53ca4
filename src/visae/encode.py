"""Images -> SAE latent maps, with the backbone, layer and preprocessing the run recorded.

``visae.encode_images(run, images)`` does what extract + an SAE's encoder do to a store's images,
for any images at hand: no store, no flags to repeat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError


@dataclass
class LatentMaps:
    """SAE codes of a batch of images, laid out on the layer's token grid."""

    maps_BSHW: torch.Tensor
    """Dense codes per grid cell, float32 (B, S, H, W); H = W = 1 for a layer without a grid (pooled);
    a sequence without a grid is laid out as one row (H = 1, W = its length)."""
    cls_BS: torch.Tensor | None
    """Codes of the CLS token where the layer has one (the first CLS token), else None."""
    grid: tuple[int, int]
    """(H, W) of ``maps_BSHW``."""
    layer: str
    backbone: str

    def top(self, image_index: int, n: int = 10) -> list[tuple[int, float]]:
        """The ``n`` strongest latents of one image: (latent, max activation over its grid cells), strongest first."""
        if not 0 <= image_index < self.maps_BSHW.shape[0]:
            raise VisaeError(f"image_index {image_index} is out of range", f"pass 0 .. {self.maps_BSHW.shape[0] - 1}")
        peak_S = self.maps_BSHW[image_index].flatten(1).amax(dim=1)
        values, latents = peak_S.topk(min(n, peak_S.numel()))
        return [(int(s), float(v)) for s, v in zip(latents, values) if v > 0]


def encode_images(run: str | Path, images: Sequence[Any], *, batch_size: int = 32, device: str = "auto") -> LatentMaps:
    """Latent maps of ``images`` (PIL images, HWC uint8 arrays or file paths, or one of them) under the SAE of ``run``
    (a run directory with one SAE, or one SAE folder), preprocessed exactly as its store was extracted."""
    from visae.analysis.inputs import encode, open_sae, read_run
    from visae.backbones.base import load_backbone
    from visae.backbones.tokens import TokenLayout
    from visae.data.transforms import Preprocess

    if batch_size < 1:
        raise VisaeError(f"batch_size {batch_size} must be at least 1", "pass batch_size=32")
    if isinstance(images, (str, Path)) or getattr(images, "ndim", None) == 3 or hasattr(images, "getpixel"):
        images = [images]  # one path, HWC array or PIL image (a string is not a sequence of paths)
    if len(images) == 0:
        raise VisaeError("no images given", "pass a list of PIL images, HWC uint8 arrays or file paths")
    info = read_run(run)
    meta = _store_meta(info)
    sae = open_sae(info.sae_dir)
    bb = load_backbone(info.backbone, random_init=bool(meta.get("random_init")), device=device,
                       allow_position_match=bool(meta.get("position_match")))  # fmt: skip
    layout = TokenLayout.from_json(meta["layout"])
    preprocess = Preprocess(**meta["preprocess"])
    sae.to(bb.device)
    maps, cls = [], []
    for start in range(0, len(images), batch_size):
        pixels_BCHW = torch.stack([preprocess(_as_array(im)) for im in images[start : start + batch_size]])
        out = bb.capture(pixels_BCHW, [info.layer])[info.layer].float()
        m, c = _codes(out, layout, lambda acts_TD: encode(sae, acts_TD).cpu())
        maps.append(m)
        cls.append(c)
    maps_BSHW = torch.cat(maps)
    return LatentMaps(maps_BSHW, torch.cat(cls) if cls[0] is not None else None,
                      (int(maps_BSHW.shape[2]), int(maps_BSHW.shape[3])), info.layer, info.backbone)  # fmt: skip


def _codes(out: torch.Tensor, layout: Any, encode: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(maps_BSHW, cls_BS or None) of one batch of layer outputs."""
    from visae.backbones.tokens import to_tokens

    B = out.shape[0]
    tokens_TD, _ = to_tokens(out, layout, select="patch")
    codes_TS = encode(tokens_TD)
    H, W = layout.grid if layout.grid is not None else (1, codes_TS.shape[0] // B)
    maps_BSHW = codes_TS.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
    if not layout.n_cls:
        return maps_BSHW, None
    cls_TD, _ = to_tokens(out, layout, select="cls")
    return maps_BSHW, encode(cls_TD).reshape(B, layout.n_cls, -1)[:, 0]


def _store_meta(info: Any) -> dict[str, Any]:
    """The store metadata the SAE recorded (layout, preprocessing, how the backbone was loaded)."""
    cfg = json.loads((info.sae_dir / "cfg.json").read_text())
    meta = dict((cfg.get("visae") or {}).get("store_meta") or {})
    if not info.backbone or not info.layer or "layout" not in meta or "preprocess" not in meta:
        raise VisaeError(f"the SAE in {info.sae_dir} does not record its backbone, layer and preprocessing",
                         "encode images with an SAE trained by visae train (0.1 or later)")  # fmt: skip
    return meta


def _as_array(image: Any) -> np.ndarray:
    """An image as HWC uint8 RGB."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise VisaeError(f"cannot read image {image} ({e})", "pass a readable image file") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise VisaeError(f"an image array of shape {arr.shape} and dtype {arr.dtype} is not HWC uint8 RGB",
                         "pass (H, W, 3) uint8 arrays, PIL images or file paths")  # fmt: skip
    return np.ascontiguousarray(arr[..., :3])
