"""Pick the compute dtype and memory layout by timing them on this machine, for this model.

bf16 autocast is ~2x faster than fp32 for large matmuls on CPUs with bf16 units, but a
small ConvNeXt spends much of its time in depthwise convs and LayerNorms, where it can
be slower. So ``auto`` measures: a few real training steps (forward, backward, AdamW) of
a copy of the model in each variant, interleaved to share the machine's noise, and keeps
the fastest. fp16 is never a candidate on CPU (its matmuls are ~100x slower there).
On a GPU nothing is timed (``gpu_speed``): bf16 autocast unless fp32 is asked for.
"""

from __future__ import annotations

import copy
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import ContextManager

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Speed:
    """How to run the training steps, and the timings that decided it."""

    bf16: bool
    channels_last: bool
    step_ms: dict[str, float] = field(default_factory=dict)
    """Median training-step time of each measured variant ('fp32', 'bf16', 'fp32+cl', 'bf16+cl')."""
    device_type: str = "cpu"
    """'cpu' or 'cuda': where the steps run (and so which autocast applies)."""

    def autocast(self) -> ContextManager:
        return torch.autocast(self.device_type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def layout(self, x: torch.Tensor | nn.Module):
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(memory_format=fmt) if isinstance(x, nn.Module) else x.contiguous(memory_format=fmt)

    @property
    def name(self) -> str:
        return ("bf16" if self.bf16 else "fp32") + ("+cl" if self.channels_last else "")


def choose_speed(
    model: nn.Module, x_BCHW: torch.Tensor, labels_B: torch.Tensor, precision: str, channels_last: str, steps: int = 5
) -> Speed:
    """Time the allowed variants of a training step on a copy of ``model`` (on the CPU); return the fastest."""
    dtypes = [False, True] if precision == "auto" else [precision == "bf16"]
    layouts = [False, True] if channels_last == "auto" else [channels_last == "on"]
    variants = [Speed(bf16=b, channels_last=c) for b in dtypes for c in layouts]
    if len(variants) == 1:
        return variants[0]
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    states = {v.name: _fresh(model, v) for v in variants}
    for i in range(steps + 1):  # round-robin so a load spike hits every variant alike
        for v in variants:
            t = _timed_step(*states[v.name], v, x_BCHW, labels_B)
            if i > 0:  # the first step of each variant is warm-up
                times[v.name].append(t)
    step_ms = {k: round(1000 * statistics.median(ts), 2) for k, ts in times.items()}
    best = min(variants, key=lambda v: step_ms[v.name])
    return Speed(bf16=best.bf16, channels_last=best.channels_last, step_ms=step_ms)


def gpu_speed(precision: str, channels_last: str, device_type: str = "cuda") -> Speed:
    """The variant for a GPU: bf16 autocast (tensor cores) unless 'fp32', channels-last only when 'on'."""
    return Speed(bf16=precision != "fp32", channels_last=channels_last == "on", device_type=device_type)


def _fresh(model: nn.Module, v: Speed) -> tuple[nn.Module, torch.optim.Optimizer]:
    m = v.layout(copy.deepcopy(model)).train()
    return m, torch.optim.AdamW(m.parameters(), lr=1e-4)


def _timed_step(
    model: nn.Module, opt: torch.optim.Optimizer, v: Speed, x_BCHW: torch.Tensor, labels_B: torch.Tensor
) -> float:
    x_BCHW = v.layout(x_BCHW)
    t0 = time.perf_counter()
    with v.autocast():
        logits_BL = model(pixel_values=x_BCHW).logits
    loss = F.cross_entropy(logits_BL.float(), labels_B)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0
