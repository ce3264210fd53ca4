"""Light training augmentation on a batch of preprocessed images: random flips and shifts.

Both act on the normalised (B, 3, H, W) tensor, so they run after ``Preprocess.batch``
and cost one gather. A shift pads by replicating the border and crops back, which keeps
every output pixel an image pixel (no black bands the model could learn).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_shift(x_BCHW: torch.Tensor, max_shift: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 and translate it by up to ``max_shift`` px per axis."""
    B, _, H, W = x_BCHW.shape
    dev = x_BCHW.device  # the draws come from the (CPU) generator, so every device sees the same ones
    rows_BH = torch.arange(H, device=dev).expand(B, H)
    cols_BW = torch.arange(W, device=dev).expand(B, W)
    if flip:
        flipped_B = (torch.rand(B, generator=generator) < 0.5).to(dev)
        cols_BW = torch.where(flipped_B[:, None], W - 1 - cols_BW, cols_BW)
    if max_shift > 0:
        s = max_shift
        x_BCHW = F.pad(x_BCHW, (s, s, s, s), mode="replicate")
        dy_B, dx_B = torch.randint(0, 2 * s + 1, (2, B), generator=generator).to(dev)
        rows_BH = rows_BH + dy_B[:, None]
        cols_BW = cols_BW + dx_B[:, None]
    b_B111 = torch.arange(B, device=dev).view(B, 1, 1, 1)
    c_1C11 = torch.arange(x_BCHW.shape[1], device=dev).view(1, -1, 1, 1)
    return x_BCHW[b_B111, c_1C11, rows_BH[:, None, :, None], cols_BW[:, None, None, :]]
