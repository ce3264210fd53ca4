"""The fast kernels and a training step on a GPU (run wherever CUDA is available; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from visae.sae import SAEHparams, TrainConfig, create_sae, kernels, reference
from visae.sae.member import Member
from visae.sae.source import TensorSource
from visae.sae.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_cuda_kernels_match_the_reference_in_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    d, s, k = 64, 512, 8
    tensors = [torch.randn(96, d, generator=g), torch.randn(d, generator=g), torch.randn(s, d, generator=g).t(),
               0.1 * torch.randn(s, generator=g), torch.randn(s, d, generator=g)]  # fmt: skip
    x, b_dec, W_enc, b_enc, W_dec = [t.cuda().requires_grad_() for t in tensors]
    g_out = torch.randn(96, d, device="cuda")

    def grads(out):
        (out * g_out).sum().backward()
        res = [t.grad.clone() for t in (x, b_dec, W_enc, b_enc, W_dec)]
        for t in (x, b_dec, W_enc, b_enc, W_dec):
            t.grad = None
        return res

    sel = kernels.select_topk((x - b_dec).detach(), W_enc.detach(), b_enc.detach(), k)
    fast_out = kernels.sparse_decode(sel.idx_BK, torch.relu(kernels.encoder_values(x, b_dec, W_enc, b_enc, sel)), W_dec)
    fast = grads(fast_out)
    ref_out = reference.sparse_decode(sel.idx_BK, torch.relu(reference.encoder_values(x, b_dec, W_enc, b_enc, sel.idx_BK)), W_dec)
    ref = grads(ref_out)
    torch.testing.assert_close(fast_out, ref_out, atol=1e-3, rtol=1e-3)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "matryoshka", "relu"])
def test_a_cuda_training_step_matches_the_cpu_step(arch):
    torch.manual_seed(0)
    x_BD = torch.randn(256, 32)
    hp = SAEHparams(arch=arch, k=4, d_sae=128, lr=1e-3)
    cfg = TrainConfig.build(store="-", out="-", dtype="fp32", lr_warmup=0, lr_decay=0)
    saes = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(1)
        m = Member(hp, create_sae(hp.spec(32)).to(dev), cfg, total_steps=10, dead_tokens=10**6)
        m.step(x_BD.to(dev), 0, measure=True)
        saes[dev] = m
    for name, p in saes["cpu"].sae.state_dict().items():
        torch.testing.assert_close(saes["cuda"].sae.state_dict()[name].cpu(), p, atol=1e-4, rtol=1e-3, msg=name)


def test_train_on_cuda_then_resume_on_cpu(tmp_path):
    acts = torch.randn(4096, 16)
    base = dict(store="-", out=str(tmp_path / "run"), batch_size=128, training_tokens=128 * 20, checkpoint_every=128 * 10,
                saes=[dict(arch="topk", k=4, d_sae=64)], dtype="fp32")  # fmt: skip

    class Stop(TensorSource):
        def batches(self, *a, **kw):
            for i, b in enumerate(super().batches(*a, **kw)):
                if i == 12:
                    raise KeyboardInterrupt
                yield b

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.build(**base, device="cuda"), source=Stop(acts))
    run = train(TrainConfig.build(**base, device="cpu", resume=True), source=TensorSource(acts))
    assert run.load().W_dec.device.type == "cpu"
