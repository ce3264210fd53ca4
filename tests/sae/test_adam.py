"""MemoryOrderAdam is torch's Adam: same updates, same state, for column-major weights too."""

from __future__ import annotations

import torch

from visae.sae.member import MemoryOrderAdam, make_adam


def _pair(seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(40, 6, generator=g).t()  # [6, 40] column-major, like W_enc
    b = torch.randn(6, generator=g)
    return [torch.nn.Parameter(W.clone()), torch.nn.Parameter(b.clone())], [
        torch.nn.Parameter(W.clone()), torch.nn.Parameter(b.clone())]


def test_memory_order_adam_matches_torch_adam():
    ours_p, ref_p = _pair(0)
    ours = make_adam(ours_p, 1e-2)
    assert isinstance(ours, MemoryOrderAdam)
    ref = torch.optim.Adam(ref_p, lr=1e-2, betas=(0.9, 0.999), eps=6.25e-10)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        grads = [torch.randn(40, 6, generator=g).t(), torch.randn(6, generator=g)]
        for p, q, gr in zip(ours_p, ref_p, grads):
            p.grad, q.grad = gr.clone().t().contiguous().t() if gr.dim() == 2 else gr.clone(), gr.clone()
        ours.step()
        ref.step()
    for p, q in zip(ours_p, ref_p):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        assert p.stride() == q.stride()
    s_ours, s_ref = ours.state[ours_p[0]], ref.state[ref_p[0]]
    assert s_ours["exp_avg"].shape == s_ref["exp_avg"].shape == (6, 40)
    torch.testing.assert_close(s_ours["exp_avg_sq"], s_ref["exp_avg_sq"])
    # its state dict loads into plain torch Adam and back (checkpoints stay torch's format)
    again = torch.optim.Adam(ref_p, lr=1e-2)
    again.load_state_dict(ours.state_dict())
    assert float(again.state_dict()["state"][0]["step"]) == 4.0
