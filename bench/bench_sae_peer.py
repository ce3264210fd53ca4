"""Peer side of bench_sae.py: overcomplete's TopKSAE on the same data and config.

Run by bench_sae.py with the peer's venv (.bench-venv-peer: torch==2.13.0 + overcomplete
installed with --no-deps + einops/scipy/scikit-learn; overcomplete's top-level package
imports torchvision, so only its ``sae`` subpackage is loaded). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_sae_common import B, K, S, interleaved, nmse, peak_mb, reset_peak  # noqa: E402


def import_overcomplete_sae():
    spec = importlib.util.find_spec("overcomplete")
    pkg = types.ModuleType("overcomplete")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["overcomplete"] = pkg
    from overcomplete.sae import TopKSAE

    return TopKSAE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    data = torch.from_numpy(np.load(a.data))
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    TopKSAE = import_overcomplete_sae()
    base_mb = reset_peak()
    torch.manual_seed(0)
    sae = TopKSAE(data.shape[1], nb_concepts=S, top_k=K, encoder_module="linear")
    opt = torch.optim.Adam(sae.parameters(), lr=a.lr)

    def step(x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dt == torch.bfloat16):
            _, _, x_hat = sae(x)
        loss = (x_hat.float() - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    batches = [data[i * B : (i + 1) * B] for i in range(data.shape[0] // B)]
    train, held = batches[:-1], batches[-1]
    for i in range(3):
        step(train[i])
    peak = peak_mb() - base_mb
    gemm, step_s = interleaved(step, train, dt, a.steps)
    torch.manual_seed(0)
    sae = TopKSAE(data.shape[1], nb_concepts=S, top_k=K, encoder_module="linear")
    opt = torch.optim.Adam(sae.parameters(), lr=a.lr)
    for i in range(a.train_steps):
        step(train[i % len(train)])
    with torch.no_grad():
        err = nmse(held, sae(held)[2].float())
    print(json.dumps({"lib": "overcomplete", "dtype": a.dtype, "gemm_s": gemm, "step_s": step_s,
                      "tokens_per_s": B / step_s, "ratio": gemm / step_s, "nmse": err, "peak_mb": peak}))


if __name__ == "__main__":
    main()
