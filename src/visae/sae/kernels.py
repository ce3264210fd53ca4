"""Speed from sparsity: top-k selection, sparse encoder gradient, sparse decode.

A top-k SAE step should cost about one dense encoder GEMM. Autograd through
``topk(x @ W_enc + b_enc)`` and ``dense_codes @ W_dec`` would add three more dense
[B, S] x [S, D] products in the backward pass. Here:

- ``select_topk`` / ``select_batch_topk`` run the encoder GEMM without autograd (in
  row chunks, in the autocast dtype when one is active) and keep only the selected
  indices and pre-activations;
- ``encoder_values`` hands those values back with a *sparse* gradient: the encoder
  weight and bias gradients touch only the selected latents (a CSR [S, B] x [B, D]
  product), the ``b_dec`` gradient is one [D, S] matvec;
- ``sparse_decode`` decodes with ``embedding_bag`` and back-propagates to ``W_dec`` only
  on the selected rows, to the values by a sampled dot product (SDDMM); both walk the
  slots sorted by latent, so the rows of ``W_dec`` are read in order.

On a small shared CPU the non-GEMM work costs as much in overheads as in arithmetic, so:
the GEMM writes into one reused scratch buffer, the weight gradients into last step's
gradients (``recycle_grads``) — fresh 40-100 MB tensors page-fault on every step — and
``few_threads`` runs everything but the GEMM and the top-k on one thread.

``reference.py`` holds the plain versions of the same maths; tests check that the two
agree in values and gradients. All gradients are computed in float32 (the weights'
dtype); only the encoder GEMM runs in bf16 under bf16 autocast.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd import Function

CHUNK_ROWS = 2048
"""Rows of the batch per encoder GEMM: bounds the dense [rows, S] buffer."""


class Selection(NamedTuple):
    idx_BK: Tensor
    """Selected latent per slot (int64)."""
    pre_BK: Tensor
    """Their pre-activations (float32, no grad)."""


def gemm_dtype(W: Tensor) -> torch.dtype:
    """The dtype the encoder GEMM runs in: the autocast dtype when autocast is on."""
    dev = W.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return W.dtype


_threads = threading.local()


@contextmanager
def few_threads(n: int = 1) -> Iterator[None]:
    """Run the ops inside on ``n`` threads, except the encoder GEMM and top-k.

    On a shared 2-core machine every parallel region of a small op waits for a scheduler
    slice before both threads are in; a training step has ~100 such ops on [B, D], [B, K]
    and [S, D] tensors, which then cost more than the GEMM. The GEMM and the top-k (one
    big region per chunk) get every thread back through ``all_threads``.
    """
    outer = getattr(_threads, "full", None), getattr(_threads, "few", None)
    full = outer[0] or torch.get_num_threads()
    _threads.full, _threads.few = full, n
    torch.set_num_threads(n)
    try:
        yield
    finally:
        _threads.full, _threads.few = outer
        torch.set_num_threads(outer[1] or full)


@contextmanager
def all_threads() -> Iterator[None]:
    """Inside ``few_threads``: give the ops inside every thread again (else a no-op)."""
    full = getattr(_threads, "full", None)
    if full is None:
        yield
        return
    torch.set_num_threads(full)
    try:
        yield
    finally:
        torch.set_num_threads(_threads.few)


SCRATCH_BYTES = 128 * 2**20
"""Most bytes of the reused pre-activation buffer: bounds the rows of one GEMM chunk."""

_scratch = threading.local()


def _scratch_2d(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A [rows, cols] buffer kept across calls (per thread, dtype and device).

    A fresh [2048, 12288] float32 tensor is mmap'd by malloc and page-faults on every
    step (~30 ms per 100 MB on a small VM); the encoder GEMM writes into this one instead.
    """
    bufs = _scratch.__dict__.setdefault("bufs", {})
    buf, n = bufs.get((dtype, device)), rows * cols
    if buf is None or buf.numel() < n:
        bufs.pop((dtype, device), None)  # free the small one before allocating
        buf = bufs[(dtype, device)] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n].view(rows, cols)


@torch.no_grad()
def _pre_chunks(xc_BD: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, chunk: int):
    """Yield (row slice, pre-activations [rows, S]) of ``xc @ W_enc + b_enc``.

    The pre-activations live in a reused scratch buffer: use them before the next chunk.
    """
    dt = gemm_dtype(W_enc_DS)
    with torch.autocast(xc_BD.device.type, enabled=False):
        W = W_enc_DS.to(dt)
        b = b_enc_S.to(dt)
        x = xc_BD.to(dt)
        B, S = x.shape[0], W.shape[1]
        rows = max(1, min(chunk, B, SCRATCH_BYTES // (S * W.element_size())))
        buf_bS = _scratch_2d(rows, S, dt, x.device)
        for i in range(0, B, rows):
            pre_bS = buf_bS[: min(rows, B - i)]
            with all_threads():
                torch.mm(x[i : i + rows], W, out=pre_bS).add_(b)  # mm + in-place bias beats addmm
            yield slice(i, i + rows), pre_bS


@torch.no_grad()
def select_topk(
    xc_BD: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, k: int, chunk: int = CHUNK_ROWS
) -> Selection:
    """Per-token top-k of the pre-activations ``xc @ W_enc + b_enc``."""
    B = xc_BD.shape[0]
    idx_BK = torch.empty(B, k, dtype=torch.int64, device=xc_BD.device)
    pre_BK = torch.empty(B, k, dtype=torch.float32, device=xc_BD.device)
    for rows, pre_bS in _pre_chunks(xc_BD, W_enc_DS, b_enc_S, chunk):
        with all_threads():
            val_bK, idx_bK = pre_bS.topk(k, dim=1, sorted=False)
        idx_BK[rows] = idx_bK
        pre_BK[rows] = val_bK
    return Selection(idx_BK, pre_BK)


@torch.no_grad()
def select_dead_topk(
    xc_BD: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, dead_S: Tensor, k_aux: int
) -> Selection:
    """Per-token top-``k_aux`` among the dead latents only (for the AuxK loss)."""
    dead_idx = dead_S.nonzero().squeeze(1)
    k_aux = min(k_aux, dead_idx.numel())
    sel = select_topk(xc_BD, W_enc_DS[:, dead_idx], b_enc_S[dead_idx], k_aux)
    return Selection(dead_idx[sel.idx_BK], sel.pre_BK)


@torch.no_grad()
def select_batch_topk(
    xc_BD: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, k: int, chunk: int = CHUNK_ROWS, world: Any = None,
    sharded: bool = False,
) -> tuple[Selection, Tensor, Tensor]:
    """BatchTopK: the ``k * B`` largest positive pre-activations of the whole batch.

    Returns per-token slots, a mask of the slots that were kept, and the smallest kept
    pre-activation. Each row keeps its top ``cap`` candidates; when some row's candidates
    are all above the batch threshold it may hold more, so ``cap`` doubles and the
    selection is redone: the result is exact.

    With a data-parallel ``world`` (``visae.distributed.World``; this rank holds ``B`` of the
    ``B * N`` tokens of the global batch) the threshold is the global batch's: every rank sends its
    ``k * B * N`` largest candidates, all take the ``k * B * N``-th largest of the union, and the
    smallest kept value is min-reduced, so the selection is the one a single process would make.
    With ``sharded`` the ranks hold the same ``B`` tokens and each its own slice of the latents
    (``visae.sae.sharded``): the same exchange, for the ``k * B`` largest of the union.
    """
    B, S = xc_BD.shape[0], W_enc_DS.shape[1]
    dp = world is not None and world.distributed
    cap = min(S, 2 * k)
    while True:
        sel = select_topk(xc_BD, W_enc_DS, b_enc_S, cap, chunk)
        pos_BK = sel.pre_BK.clamp_min(0)
        if dp:
            thresh = _global_kth_largest(pos_BK, k * B * (1 if sharded else world.size), world)
        else:
            n_keep = min(k * B, pos_BK.numel())
            thresh = pos_BK.flatten().kthvalue(pos_BK.numel() - n_keep + 1).values
        row_full = bool((pos_BK.min(dim=1).values >= thresh).any())
        if dp:
            row_full = bool(_reduce(torch.tensor([float(row_full)]), world, "max", "BatchTopK selection") > 0)
        if cap >= S or not bool(thresh > 0) or not row_full:
            break
        cap = min(S, 2 * cap)
    keep_BK = (pos_BK >= thresh) & (pos_BK > 0)
    min_kept = pos_BK[keep_BK].min() if bool(keep_BK.any()) else pos_BK.new_zeros(())
    if dp:
        local = min_kept if bool(keep_BK.any()) else pos_BK.new_full((), float("inf"))
        m = _reduce(local.reshape(1).float(), world, "min", "BatchTopK threshold")[0]
        min_kept = (m if bool(torch.isfinite(m)) else m.new_zeros(())).to(pos_BK.device, pos_BK.dtype)
    return sel, keep_BK, min_kept


def _reduce(t: Tensor, world: Any, op: str, what: str) -> Tensor:
    dev = t.device if world.backend == "nccl" else torch.device("cpu")
    return world.all_reduce(t.to(dev), f"train: {what}", op=op)


def _global_kth_largest(pos_BK: Tensor, n_keep: int, world: Any) -> Tensor:
    """The ``n_keep``-th largest value of every rank's ``pos_BK`` together (all ranks' shapes equal)."""
    m = min(n_keep, pos_BK.numel())
    top = pos_BK.flatten().float().topk(m).values
    buf_NM = torch.full((world.size, n_keep), -1.0, device=pos_BK.device)  # -1: no candidate (values are >= 0)
    buf_NM[world.rank, :m] = top
    union = _reduce(buf_NM, world, "max", "BatchTopK selection")  # row r: rank r's candidates, exactly
    n = min(n_keep, pos_BK.numel() * world.size)
    return union.flatten().topk(n).values[-1].to(pos_BK.device, pos_BK.dtype)


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": the ops used here are not
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _csr_by_row(idx_BK: Tensor, val_BK: Tensor, S: int) -> Tensor:
    """The [B, S] sparse matrix with ``val_BK`` at ``idx_BK`` (CSR, rows are tokens)."""
    B, K = idx_BK.shape
    crow = torch.arange(0, B * K + 1, K, device=idx_BK.device)
    return _csr(crow, idx_BK.reshape(-1), val_BK.reshape(-1), (B, S))


def _stable_order(flat: Tensor, S: int) -> Tensor:
    """Stable argsort of latent indices in [0, S). On CPU numpy's radix sort (uint16 keys)
    is ~100x faster than torch's parallel sort on a busy machine."""
    if flat.device.type != "cpu":
        return torch.argsort(flat, stable=True)
    keys = flat.numpy().astype(np.uint16 if S <= 65536 else np.int64)
    return torch.from_numpy(np.argsort(keys, kind="stable"))


def _latent_order(idx_BK: Tensor, S: int) -> tuple[Tensor, Tensor]:
    """Sort the slots by latent: CSR row pointers [S + 1] and the slot ids (b * K + k) in
    latent order."""
    flat = idx_BK.reshape(-1)
    crow = torch.zeros(S + 1, dtype=torch.int64, device=flat.device)
    crow[1:] = torch.bincount(flat, minlength=S).cumsum(0)
    return crow, _stable_order(flat, S)


def _csr_by_latent(idx_BK: Tensor, val_BK: Tensor, S: int, by_latent=None) -> Tensor:
    """The transpose, [S, B] (CSR, rows are latents)."""
    B, K = idx_BK.shape
    crow, order = by_latent if by_latent is not None else _latent_order(idx_BK, S)
    return _csr(crow, order // K, val_BK.reshape(-1)[order], (S, B))


def recycle_grads(params: Iterable[Tensor]) -> None:
    """``zero_grad(set_to_none=True)`` that keeps the big gradients for the next backward.

    The next weight-gradient products write into them instead of into fresh memory (a
    fresh 37 MB tensor page-faults ~15 ms on a small VM); autograd then installs them as
    the new ``.grad``. The caller must hold no other reference to the old gradients.
    ``drop_spare_grads()`` after the backward frees the ones it did not use.
    """
    spare = _scratch.__dict__.setdefault("spare", [])
    spare.clear()
    for p in params:
        g, p.grad = p.grad, None
        if g is not None and g.dim() == 2 and g.numel() >= 2**18:
            spare.append(g if g.is_contiguous() else g.t())
        del g


def drop_spare_grads() -> None:
    """Free the gradients ``recycle_grads`` kept that no backward used."""
    _scratch.__dict__.setdefault("spare", []).clear()


def _empty_2d(rows: int, cols: int, like: Tensor) -> Tensor:
    """An uninitialised contiguous [rows, cols] tensor: a recycled gradient when one fits."""
    spare = _scratch.__dict__.get("spare", [])
    for i, t in enumerate(spare):
        if t.shape == (rows, cols) and t.dtype == like.dtype and t.device == like.device and t.is_contiguous():
            return spare.pop(i)
    return like.new_empty(rows, cols)


def _latent_mm(csr_SB: Tensor, dense_BD: Tensor) -> Tensor:
    """``csr_SB @ dense_BD`` into uninitialised memory (``beta=0``: no zero-fill pass)."""
    out_SD = _empty_2d(csr_SB.shape[0], dense_BD.shape[1], dense_BD)
    return torch.addmm(out_SD, csr_SB, dense_BD, beta=0.0, out=out_SD)


def _sampled_dots(idx_BK: Tensor, g_BD: Tensor, W_SD: Tensor, by_latent) -> Tensor:
    """``out[b, k] = g[b] . W[idx[b, k]]`` (an SDDMM). Walked latent by latent, so the rows
    of ``W`` are read in order (2x faster than token by token at S=12288)."""
    B, K = idx_BK.shape
    crow, order = by_latent
    pattern_SB = _csr(crow, order // K, g_BD.new_zeros(B * K), (W_SD.shape[0], B))
    dots_N = torch.sparse.sampled_addmm(pattern_SB, W_SD, g_BD.t(), beta=0.0).values()
    out_N = torch.empty_like(dots_N)
    out_N[order] = dots_N
    return out_N.view(B, K)


def _like_layout(grad_DS_view: Tensor, W: Tensor) -> Tensor:
    """Return a gradient with the parameter's memory layout (no copy when it matches)."""
    if grad_DS_view.stride() == W.stride():
        return grad_DS_view
    return grad_DS_view.contiguous() if W.is_contiguous() else grad_DS_view.clone()


class _EncoderValues(Function):
    """``(x - b_dec) @ W_enc + b_enc`` at the selected (token, latent) slots."""

    @staticmethod
    def forward(ctx, x_BD, b_dec_D, W_enc_DS, b_enc_S, idx_BK, pre_BK):  # type: ignore[override]
        ctx.save_for_backward(x_BD, b_dec_D, W_enc_DS, idx_BK)
        return pre_BK.to(W_enc_DS.dtype, copy=True)

    @staticmethod
    def backward(ctx, g_BK):  # type: ignore[override]
        x_BD, b_dec_D, W_enc_DS, idx_BK = ctx.saved_tensors
        S = W_enc_DS.shape[1]
        g_BK = g_BK.to(W_enc_DS.dtype)
        g_S = torch.zeros(S, dtype=g_BK.dtype, device=g_BK.device)
        g_S.index_add_(0, idx_BK.reshape(-1), g_BK.reshape(-1))
        dx_BD = dW_enc_DS = None
        if ctx.needs_input_grad[2]:
            xc_BD = (x_BD - b_dec_D).to(W_enc_DS.dtype)
            dW_SD = _latent_mm(_csr_by_latent(idx_BK, g_BK, S), xc_BD)
            dW_enc_DS = _like_layout(dW_SD.t(), W_enc_DS)
        if ctx.needs_input_grad[0]:
            dx_BD = _csr_by_row(idx_BK, g_BK, S) @ W_enc_DS.t()
        db_dec_D = -(W_enc_DS @ g_S) if ctx.needs_input_grad[1] else None
        return dx_BD, db_dec_D, dW_enc_DS, g_S, None, None


class _SparseDecode(Function):
    """``sum_k val[b, k] * W_dec[idx[b, k]]``: gather-decode with a sparse backward."""

    @staticmethod
    def forward(ctx, idx_BK, val_BK, W_dec_SD):  # type: ignore[override]
        val_BK = val_BK.to(W_dec_SD.dtype)
        ctx.save_for_backward(idx_BK, val_BK, W_dec_SD)
        return torch.nn.functional.embedding_bag(
            idx_BK, W_dec_SD, per_sample_weights=val_BK, mode="sum"
        )

    @staticmethod
    def backward(ctx, g_BD):  # type: ignore[override]
        idx_BK, val_BK, W_dec_SD = ctx.saved_tensors
        S = W_dec_SD.shape[0]
        g_BD = g_BD.to(W_dec_SD.dtype).contiguous()
        dval_BK = dW_SD = None
        by_latent = _latent_order(idx_BK, S)
        if ctx.needs_input_grad[1]:
            dval_BK = _sampled_dots(idx_BK, g_BD, W_dec_SD, by_latent)
        if ctx.needs_input_grad[2]:
            dW_SD = _latent_mm(_csr_by_latent(idx_BK, val_BK, S, by_latent), g_BD)
        return None, dval_BK, dW_SD


def encoder_values(
    x_BD: Tensor, b_dec_D: Tensor, W_enc_DS: Tensor, b_enc_S: Tensor, sel: Selection
) -> Tensor:
    """Selected pre-activations, differentiable w.r.t. x, b_dec, W_enc and b_enc."""
    return _EncoderValues.apply(x_BD, b_dec_D, W_enc_DS, b_enc_S, sel.idx_BK, sel.pre_BK)


def sparse_decode(idx_BK: Tensor, val_BK: Tensor, W_dec_SD: Tensor) -> Tensor:
    """``codes @ W_dec`` for sparse codes, differentiable w.r.t. values and W_dec."""
    return _SparseDecode.apply(idx_BK, val_BK, W_dec_SD)
