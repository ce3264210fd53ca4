"""Benchmark: a visae TopK SAE step vs one bare encoder GEMM, and vs a peer library.

    python bench/bench_sae.py [--steps 8] [--train-steps 20] [--peer-python .bench-venv-peer/bin/python]

d_in=768, width 12288, k=32, batch 4096, on the same synthetic data for every library.
Each measurement runs in its own process (clean peak memory), which also times the
physical reference, one bare [4096, 768] @ [768, 12288] GEMM in the same dtype; the
ratio GEMM time / step time is the fraction of the ideal "a step costs one GEMM".
NMSE is measured on a held-out batch after the same number of training tokens (Adam,
lr 1e-3, no schedule, for both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_sae_common import B, D, K, S, interleaved, make_data, nmse, peak_mb, reset_peak  # noqa: E402


def child(data_path: str, dtype: str, steps: int, train_steps: int, lr: float) -> dict:
    """One visae measurement (runs in a fresh process)."""
    import os

    os.environ["VISAE_QUIET"] = "1"
    from visae.sae import create_sae
    from visae.sae.member import Member
    from visae.sae.train_config import SAEHparams, TrainConfig

    data = torch.from_numpy(np.load(data_path))
    cfg = TrainConfig.build(store="-", out="-", dtype=dtype, lr_warmup=0, lr_decay=0, dead_tokens=10**9)
    hp = SAEHparams(arch="topk", k=K, d_sae=S, lr=lr)

    def fresh() -> Member:
        torch.manual_seed(0)
        return Member(hp, create_sae(hp.spec(D)), cfg, total_steps=10**6, dead_tokens=10**9)

    batches = [data[i * B : (i + 1) * B] for i in range(data.shape[0] // B)]
    train, held = batches[:-1], batches[-1]
    base_mb = reset_peak()
    m = fresh()
    m.step(train[0], 0, measure=False)
    for i in range(2):
        m.step(train[1 + i], i, measure=False)
    peak = peak_mb() - base_mb  # weights, optimizer state, grads, one batch's buffers
    gemm, step_s = interleaved(lambda x: m.step(x, 0, measure=False), train,
                               torch.bfloat16 if dtype == "bf16" else torch.float32, steps)
    m = fresh()
    for i in range(train_steps):
        m.step(train[i % len(train)], i, measure=False)
    with torch.no_grad():
        err = nmse(held, m.sae.eval()(held).recon_BD)
    return {"lib": "visae", "dtype": dtype, "gemm_s": gemm, "step_s": step_s, "tokens_per_s": B / step_s,
            "ratio": gemm / step_s, "nmse": err, "peak_mb": peak}


def run_child(cmd: list[str]) -> dict | None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  failed: {' '.join(cmd[:2])}: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    ap.add_argument("--train-steps", type=int, default=20, help="steps before the NMSE comparison")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--peer-python", default=str(HERE.parent / ".bench-venv-peer" / "bin" / "python"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.data, a.child, a.steps, a.train_steps, a.lr)))
        return
    n_batches = max(a.train_steps, a.steps + 1) + 1
    with tempfile.TemporaryDirectory() as tmp:
        data_path = str(Path(tmp) / "acts.npy")
        np.save(data_path, make_data(n_batches * B))
        common = ["--data", data_path, "--steps", str(a.steps), "--train-steps", str(a.train_steps), "--lr", str(a.lr)]
        rows = []
        for dtype in ("fp32", "bf16"):
            rows.append(run_child([sys.executable, __file__, "--child", dtype, *common]))
            if Path(a.peer_python).exists():
                rows.append(run_child([a.peer_python, str(HERE / "bench_sae_peer.py"), "--dtype", dtype, *common]))
    report([r for r in rows if r])


def report(rows: list[dict]) -> None:
    weights_mb = (2 * S * D + S + D) * 4 / 2**20
    print(f"TopK SAE step, d_in={D} width={S} k={K} batch={B}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"weights {weights_mb:.0f} MiB, + Adam state {2 * weights_mb:.0f} MiB, + grads {weights_mb:.0f} MiB, "
          f"batch {B * D * 4 / 2**20:.0f} MiB")
    print(f"{'lib':<13}{'dtype':<6}{'GEMM ms':>9}{'step ms':>9}{'tok/s':>9}{'GEMM/step':>11}{'NMSE@' + str(B) + 'x':>11}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['lib']:<13}{r['dtype']:<6}{1e3 * r['gemm_s']:>9.0f}{1e3 * r['step_s']:>9.0f}{r['tokens_per_s']:>9.0f}"
              f"{r['ratio']:>11.2f}{r['nmse']:>11.3f}{r['peak_mb']:>10.0f}")


if __name__ == "__main__":
    main()
