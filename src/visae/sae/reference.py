"""Plain reference implementations of ``kernels.py``: the same maths, dense autograd.

Slow (dense [B, S] intermediates and gradients) and obviously right; the tests check
that the fast kernels agree with these in values and gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor


def select_topk(xc_BD: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-token top-k of the pre-activations: (indices, values)."""
    top = (xc_BD @ W_enc_DS + b_enc_S).topk(k, dim=1)
    return top.indices, top.values


def encoder_values(
    x_BD: Tensor, b_dec_D: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, idx_BK: Tensor
) -> Tensor:
    """``((x - b_dec) @ W_enc + b_enc)[b, idx[b, k]]`` through dense autograd."""
    pre_BS = (x_BD - b_dec_D) @ W_enc_DS + b_enc_S
    return pre_BS.gather(1, idx_BK)


def sparse_decode(idx_BK: Tensor, val_BK: Tensor, W_dec_SD: Tensor) -> Tensor:
    """Scatter the slots into dense codes, then one dense matmul."""
    B, S = idx_BK.shape[0], W_dec_SD.shape[0]
    codes_BS = torch.zeros(B, S, dtype=val_BK.dtype, device=val_BK.device)
    return codes_BS.scatter_add(1, idx_BK, val_BK) @ W_dec_SD
