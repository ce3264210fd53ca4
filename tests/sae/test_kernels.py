"""The fast sparse kernels agree with the plain reference, in values and gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.sae import kernels, reference


def _weights(d, s, seed):
    g = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(s, d, generator=g).t().requires_grad_()  # column-major like the SAE
    b_enc = (0.1 * torch.randn(s, generator=g)).requires_grad_()
    W_dec = torch.randn(s, d, generator=g).requires_grad_()
    b_dec = torch.randn(d, generator=g).requires_grad_()
    x = torch.randn(24, d, generator=g).requires_grad_()
    return x, b_dec, W_enc, b_enc, W_dec


def _grads(tensors):
    out = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return out


@settings(max_examples=15, deadline=None)
@given(d=st.integers(2, 12), s=st.integers(4, 40), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_fast_encode_decode_matches_reference(d, s, k, seed):
    x, b_dec, W_enc, b_enc, W_dec = _weights(d, s, seed)
    params = [x, b_dec, W_enc, b_enc, W_dec]
    g_out = torch.randn(x.shape[0], d, generator=torch.Generator().manual_seed(seed + 1))

    sel = kernels.select_topk((x - b_dec).detach(), W_enc.detach(), b_enc.detach(), k)
    val = kernels.encoder_values(x, b_dec, W_enc, b_enc, sel)
    out = kernels.sparse_decode(sel.idx_BK, torch.relu(val), W_dec)
    (out * g_out).sum().backward()
    fast = _grads(params)

    idx_ref, top_ref = reference.select_topk(x - b_dec, W_enc, b_enc, k)
    val_ref = reference.encoder_values(x, b_dec, W_enc, b_enc, sel.idx_BK)
    out_ref = reference.sparse_decode(sel.idx_BK, torch.relu(val_ref), W_dec)
    (out_ref * g_out).sum().backward()
    slow = _grads(params)

    assert torch.equal(sel.idx_BK.sort(1).values, idx_ref.sort(1).values) or torch.allclose(
        sel.pre_BK.sort(1).values, top_ref.detach().sort(1).values, atol=1e-5
    )
    torch.testing.assert_close(val, val_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, out_ref, atol=1e-4, rtol=1e-4)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_encoder_grad_keeps_column_major_layout():
    x, b_dec, W_enc, b_enc, _ = _weights(8, 32, 0)
    W = torch.nn.Parameter(W_enc.detach().clone())
    sel = kernels.select_topk(x.detach(), W.detach(), b_enc.detach(), 3)
    kernels.encoder_values(x, b_dec, W, b_enc, sel).sum().backward()
    assert W.grad.stride() == W.stride()
    # gradient only on latents that were selected
    untouched = torch.ones(32, dtype=torch.bool)
    untouched[sel.idx_BK.flatten()] = False
    assert W.grad[:, untouched].abs().sum() == 0


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 12), s=st.integers(2, 30), k=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_batch_topk_is_exact(b, s, k, seed):
    g = torch.Generator().manual_seed(seed)
    x, W, bias = torch.randn(b, 6, generator=g), torch.randn(6, s, generator=g), torch.randn(s, generator=g)
    sel, keep, min_kept = kernels.select_batch_topk(x, W, bias, min(k, s), chunk=5)
    got = torch.zeros(b, s).scatter_add(1, sel.idx_BK, torch.where(keep, sel.pre_BK, 0.0))
    pre = (x @ W + bias).clamp_min(0)
    n_keep = min(min(k, s) * b, pre.numel())
    thresh = pre.flatten().topk(n_keep).values[-1]
    want = torch.where((pre >= thresh) & (pre > 0), pre, 0.0)
    torch.testing.assert_close(got, want)
    if keep.any():
        assert float(min_kept) == pytest.approx(float(want[want > 0].min()), rel=1e-4, abs=1e-5)


def test_bf16_autocast_runs_only_the_gemm_in_bf16():
    x, b_dec, W_enc, b_enc, W_dec = _weights(16, 64, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sel = kernels.select_topk((x - b_dec).detach(), W_enc.detach(), b_enc.detach(), 4)
        val = kernels.encoder_values(x, b_dec, W_enc, b_enc, sel)
        out = kernels.sparse_decode(sel.idx_BK, val, W_dec)
    assert val.dtype == torch.float32 and out.dtype == torch.float32
    ref = reference.encoder_values(x, b_dec, W_enc, b_enc, sel.idx_BK)
    torch.testing.assert_close(val, ref, atol=0.15, rtol=0.05)  # bf16 GEMM precision
    out.sum().backward()
    assert W_enc.grad.dtype == torch.float32 and torch.isfinite(W_enc.grad).all()


def test_recycled_gradients_give_the_same_gradients_in_the_same_memory():
    x, b_dec, W_enc, b_enc, W_dec = _weights(64, 4096, 5)  # [4096, 64]: big enough to recycle
    params = [b_dec, W_enc, b_enc, W_dec]

    def backward():
        sel = kernels.select_topk((x - b_dec).detach(), W_enc.detach(), b_enc.detach(), 3)
        val = torch.relu(kernels.encoder_values(x, b_dec, W_enc, b_enc, sel))
        kernels.sparse_decode(sel.idx_BK, val, W_dec).pow(2).sum().backward()

    backward()
    fresh = [p.grad.clone() for p in params]
    for p in params:
        p.grad.fill_(float("nan"))  # whatever the old gradients hold must not leak in
    old_ptrs = {W_enc.grad.data_ptr(), W_dec.grad.data_ptr()}
    kernels.recycle_grads(params)
    assert all(p.grad is None for p in params)
    backward()
    kernels.drop_spare_grads()
    assert {W_enc.grad.data_ptr(), W_dec.grad.data_ptr()} == old_ptrs
    assert W_enc.grad.stride() == W_enc.stride()
    for p, want in zip(params, fresh):
        torch.testing.assert_close(p.grad, want)


def test_selection_survives_the_reused_gemm_buffer():
    x, b_dec, W_enc, b_enc, _ = _weights(8, 40, 6)
    first = kernels.select_topk(x.detach(), W_enc.detach(), b_enc.detach(), 3, chunk=5)
    keep = first.pre_BK.clone(), first.idx_BK.clone()
    kernels.select_topk(2 * x.detach(), W_enc.detach(), b_enc.detach(), 3, chunk=5)
    assert torch.equal(first.pre_BK, keep[0]) and torch.equal(first.idx_BK, keep[1])
    idx_ref, top_ref = reference.select_topk(x.detach(), W_enc.detach(), b_enc.detach(), 3)
    torch.testing.assert_close(first.pre_BK.sort(1).values, top_ref.sort(1).values)


def test_few_threads_gives_the_gemm_every_thread_back():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with kernels.few_threads():
            assert torch.get_num_threads() == 1
            with kernels.all_threads():
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
            with kernels.few_threads():  # nested: still restores the outer setting
                pass
            assert torch.get_num_threads() == 1
            with kernels.all_threads():
                assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError), kernels.few_threads():
            raise ValueError
        assert torch.get_num_threads() == 2
        with kernels.all_threads():  # outside few_threads: changes nothing
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)
