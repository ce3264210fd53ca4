"""Adam for SAE training: torch's fused Adam fed memory-order views, checked before use.

``MemoryOrderAdam`` overrides torch's private ``Adam._init_group``, whose signature and
meaning may change in any torch release. ``make_adam`` therefore checks it once per
process and device type: the override's signature must be the one it was written for,
and one step on a small column-major weight must equal plain ``torch.optim.Adam``'s.
Otherwise training falls back to ``torch.optim.Adam`` (foreach, not fused: same results, a
little slower) with a one-line note.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from visae.progress import info

ADAM_KW: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 6.25e-10}
"""Adam settings for SAE training (eps small: gradients of normalised inputs are tiny)."""
INIT_GROUP_PARAMS = ("self", "group", "params_with_grad", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs",
                     "state_steps")  # fmt: skip
"""``torch.optim.Adam._init_group``'s parameters as of torch 2.4 - 2.13, which the override relies on."""

_checked: dict[str, str | None] = {}
"""Device type -> None when MemoryOrderAdam passed its self-check there, else why it failed."""


class MemoryOrderAdam(torch.optim.Adam):
    """torch's Adam, with the fused kernel fed memory-order views.

    The fused kernel copies a non-contiguous tensor to a contiguous one and back; ``W_enc``
    is column-major (see ``base.py``), so that costs ~50 ms a step at 768 x 12288. The
    update is element-wise: on ``p.t()``, ``grad.t()``, ``exp_avg.t()``, ``exp_avg_sq.t()``
    (contiguous views of the same memory) it is the same update, with no copies. State,
    ``state_dict`` and results are those of ``torch.optim.Adam``.
    """

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps):
        has_complex = super()._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps)
        if group["fused"] and not group["amsgrad"]:
            memory_order_views(params, grads, exp_avgs, exp_avg_sqs)
        return has_complex


def memory_order_views(params: list[Tensor], *others: list[Tensor]) -> None:
    """Replace, in place in every list, each column-major 2-D entry by its contiguous transpose."""
    lists = (params, *others)
    for i, p in enumerate(params):
        same = all(t[i].stride() == p.stride() and t[i].shape == p.shape for t in lists)
        if same and p.dim() == 2 and not p.is_contiguous() and p.t().is_contiguous():
            for t in lists:
                t[i] = t[i].t()


def make_adam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """MemoryOrderAdam where its self-check passes on the parameters' device, else torch's Adam."""
    device = params[0].device if params else torch.device("cpu")
    if memory_order_adam_ok(device):
        try:
            return MemoryOrderAdam(params, lr=lr, fused=True, **ADAM_KW)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.Adam(params, lr=lr, foreach=True, **ADAM_KW)


def memory_order_adam_ok(device: torch.device) -> bool:
    """Whether MemoryOrderAdam passed its self-check on ``device``'s type (run once per process)."""
    if device.type not in _checked:
        _checked[device.type] = _self_check(device)
        if _checked[device.type] is not None:
            info(f"note: memory-order Adam is off on torch {torch.__version__} ({_checked[device.type]}); "
                 "using torch.optim.Adam")  # fmt: skip
    return _checked[device.type] is None


def _self_check(device: torch.device) -> str | None:
    """None when one step of MemoryOrderAdam equals torch.optim.Adam's on a column-major weight, else why not."""
    names = tuple(inspect.signature(torch.optim.Adam._init_group).parameters)
    if names != INIT_GROUP_PARAMS:
        return f"Adam._init_group takes ({', '.join(names)})"
    g = torch.Generator().manual_seed(0)  # never the global RNG: a resumed run must draw what the first one drew
    W_DS = torch.randn(12, 5, generator=g).t()  # [5, 12], column-major like W_enc
    b_S, gW_DS, gb_S = torch.randn(12, generator=g), torch.randn(12, 5, generator=g).t(), torch.randn(12, generator=g)
    try:
        ours = [torch.nn.Parameter(t.to(device, copy=True)) for t in (W_DS, b_S)]  # copies keep the strides
        ref = [torch.nn.Parameter(t.to(device, copy=True)) for t in (W_DS, b_S)]
        opt_ours = MemoryOrderAdam(ours, lr=1e-2, fused=True, **ADAM_KW)
        opt_ref = torch.optim.Adam(ref, lr=1e-2, **ADAM_KW)  # torch's default (not fused) implementation
        for _ in range(2):
            for p, q, gr in zip(ours, ref, (gW_DS, gb_S)):
                p.grad, q.grad = gr.to(device, copy=True), gr.to(device, copy=True)
            opt_ours.step()
            opt_ref.step()
        same = all(_close(p, q) and p.stride() == q.stride() for p, q in zip(ours, ref))
        states = [(opt_ours.state[p]["exp_avg_sq"], opt_ref.state[q]["exp_avg_sq"]) for p, q in zip(ours, ref)]
        same = same and all(_close(a, b) for a, b in states)
    except Exception as e:  # noqa: BLE001 - any failure of a private API means: do not use it
        return f"its one-step check raised {type(e).__name__}: {e}".splitlines()[0]
    if not same:
        return "its one-step check differs from torch.optim.Adam"
    return None


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-7))
