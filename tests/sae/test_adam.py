"""MemoryOrderAdam is torch's Adam: same updates, same state, for column-major weights too."""

from __future__ import annotations

import pytest
import torch

from visae.sae import adam
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


@pytest.fixture
def fresh_check(monkeypatch):
    """Forget this process's self-check result, so the test's patched torch is checked afresh."""
    monkeypatch.setattr(adam, "_checked", {})
    monkeypatch.setenv("VISAE_QUIET", "0")


def _steps_like_torch(opt_params, opt):
    """Two steps of ``opt`` equal two steps of plain torch Adam on the same data."""
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in opt_params]
    ref = torch.optim.Adam(ref_params, lr=1e-2, betas=(0.9, 0.999), eps=6.25e-10)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        for p, q in zip(opt_params, ref_params):
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=g))  # p's strides, like autograd
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(opt_params, ref_params):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_changed_init_group_signature_falls_back_to_torch_adam(fresh_check, monkeypatch, capsys):
    original = torch.optim.Adam._init_group

    def future_init_group(self, group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                          step_sizes=None):  # a torch that added an argument
        return original(self, group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps)

    monkeypatch.setattr(torch.optim.Adam, "_init_group", future_init_group)
    params, _ = _pair(0)
    opt = make_adam(params, 1e-2)
    assert type(opt) is torch.optim.Adam
    err = " ".join(capsys.readouterr().err.split())  # one note (the console may wrap it)
    assert err.count("note:") == 1 and "memory-order Adam is off" in err and "_init_group takes" in err
    _steps_like_torch(params, opt)
    make_adam(_pair(1)[0], 1e-2)  # checked once per process: no second note
    assert capsys.readouterr().err == ""


def test_override_that_misbehaves_falls_back_and_training_steps(fresh_check, monkeypatch, capsys, tmp_path):
    def wrong_views(params, *others):  # e.g. a torch whose lists no longer hold the state tensors themselves
        for t in others:
            for i, x in enumerate(t):
                if x.dim() == 2 and not x.is_contiguous():
                    t[i] = x.t().contiguous().t() * 0.5

    monkeypatch.setattr(adam, "memory_order_views", wrong_views)
    assert not adam.memory_order_adam_ok(torch.device("cpu"))
    assert "differs from torch.optim.Adam" in " ".join(capsys.readouterr().err.split())
    # a whole (tiny) training run still steps, on torch's Adam
    from visae.sae.source import TensorSource
    from visae.sae.train_config import TrainConfig
    from visae.sae.trainer import train

    acts = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig.build(store="mem", out=str(tmp_path / "run"), batch_size=128, training_tokens=128 * 10,
                            log_every=2, median_sample=256, holdout=0, saes=[dict(arch="topk", k=2, d_sae=16)])
    run = train(cfg, source=TensorSource(acts))
    steps = [r["step"] for r in run.metrics() if r.get("split", "train") == "train"]
    assert steps == [2, 4, 6, 8, 10]
    assert all(r["nmse"] == r["nmse"] for r in run.metrics())  # finite, not NaN


def test_raising_check_falls_back(fresh_check, monkeypatch, capsys):
    def broken(*a, **kw):
        raise RuntimeError("fused kernel rejects views\nsecond line")

    monkeypatch.setattr(adam, "memory_order_views", broken)
    params, _ = _pair(2)
    opt = make_adam(params, 1e-2)
    assert not isinstance(opt, MemoryOrderAdam)
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("note:") == 1 and "raised RuntimeError: fused kernel rejects views" in err
    assert "second line" not in err
    _steps_like_torch(params, opt)
