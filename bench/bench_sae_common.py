"""Shared by bench_sae.py and bench_sae_peer.py (which runs in the peer's own venv).

Only numpy + torch: the same synthetic data and the same timing of the physical reference
(one bare encoder GEMM) in every process.
"""

from __future__ import annotations

import time

import numpy as np
import torch

D, S, K, B = 768, 12288, 32, 4096


def make_data(n_tokens: int, seed: int = 0) -> np.ndarray:
    """Tokens that are sparse non-negative mixes of 2*S unit atoms plus noise, scaled so
    that the mean squared norm is D (what visae's normalisation produces)."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(2 * S, D, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    out = np.empty((n_tokens, D), dtype=np.float32)
    for i in range(0, n_tokens, B):
        n = min(B, n_tokens - i)
        idx = torch.randint(0, 2 * S, (n, K), generator=g)
        val = torch.empty(n, K).exponential_(generator=g)
        x = torch.nn.functional.embedding_bag(idx, atoms, per_sample_weights=val, mode="sum")
        out[i : i + n] = (x + 0.05 * torch.randn(n, D, generator=g)).numpy()
    out -= out.mean(axis=0)
    out *= np.sqrt(D / (out**2).sum(axis=1).mean())
    return out


def interleaved(step, batches, dtype: torch.dtype, reps: int) -> tuple[float, float]:
    """Median seconds of one bare encoder GEMM [B, D] @ [D, S] in ``dtype`` and of one
    ``step(batch)``, timed alternately so both see the same machine load."""
    x = torch.randn(B, D).to(dtype)
    W = (torch.randn(D, S) / D**0.5).to(dtype)
    x @ W
    step(batches[0])
    gemm, steps = [], []
    for i in range(reps):
        t0 = time.perf_counter()
        x @ W
        t1 = time.perf_counter()
        step(batches[1 + i % (len(batches) - 1)])
        t2 = time.perf_counter()
        gemm.append(t1 - t0)
        steps.append(t2 - t1)
    return float(np.median(gemm)), float(np.median(steps))


def _status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> float:
    """Reset the process's peak-RSS mark (Linux) and return the current RSS (MiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """Peak resident memory since ``reset_peak`` (MiB)."""
    return _status_mb("VmHWM")


def nmse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
