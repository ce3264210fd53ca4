"""Benchmark data-parallel training on this machine: 1 process vs 2 torchrun ranks (gloo), same global batch.

Trains the same TopK SAE on a store (default: the demo's, ``visae demo`` first) three ways, each in a fresh
process group: one process with 2 torch threads, one process with 1 thread, and ``torchrun --nproc-per-node 2``
with 1 thread per rank. Prints the wall time of the training loop (from RUN/summary.json's run time where
recorded, else the command's wall time minus a no-step run) and the communication share of a step: the time of
one all-reduce of the SAE's gradient-sized fp32 buffer between the two ranks, divided by the 2-rank step time.

    python bench/bench_distributed.py [--store runs/demo/store] [--d-sae 12288] [--tokens 2000000] [--batch 4096]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return env | {"OMP_NUM_THREADS": str(threads), "VISAE_QUIET": "1", "VISAE_DIST_TIMEOUT": "600"}


def train(store: Path, out: Path, ranks: int, threads: int, args: argparse.Namespace, tokens: int) -> float:
    head = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-port", str(free_port())] if ranks > 1 else [sys.executable]
    cmd = [*head, "-m", "visae", "train", "--store", str(store), "--out", str(out), "--arch", "topk", "--k", "16",
           "--d-sae", str(args.d_sae), "--training-tokens", str(tokens), "--batch-size", str(args.batch), "--holdout", "0",
           "--device", "cpu", "--force"]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, env=clean_env(threads), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


ALLREDUCE = textwrap.dedent('''
    import sys, time, torch
    from visae.distributed import world
    n, reps = int(sys.argv[1]), 20
    w = world()
    t = torch.randn(n)
    w.all_reduce(t, "warm-up")
    w.barrier("start")
    t0 = time.perf_counter()
    for _ in range(reps):
        w.all_reduce(t, "bench")
    if w.main:
        print(f"{(time.perf_counter() - t0) / reps * 1000:.3f}")
''')


def allreduce_ms(n: int) -> float:
    script = Path(tempfile.mkdtemp()) / "allreduce.py"
    script.write_text(ALLREDUCE)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
                          str(script), str(n)], env=clean_env(1), capture_output=True, text=True, check=True).stdout  # fmt: skip
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("runs/demo/store"))
    ap.add_argument("--d-sae", type=int, default=12288)
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    from visae.store import Store

    d = Store(args.store).d
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    steps = args.tokens // args.batch
    rows = []
    for name, ranks, threads in (("1 process, 2 threads", 1, 2), ("1 process, 1 thread", 1, 1), ("2 ranks x 1 thread (gloo)", 2, 1)):
        base = train(args.store, work / f"base-{ranks}-{threads}", ranks, threads, args, args.batch * 2)  # start-up + 2 steps
        full = train(args.store, work / f"run-{ranks}-{threads}", ranks, threads, args, args.tokens)
        rows.append((name, full, max(full - base, 1e-9)))
    n_params = 2 * d * args.d_sae + args.d_sae + d
    comm = allreduce_ms(n_params)
    print(f"TopK SAE d {d} -> {args.d_sae} (k 16), global batch {args.batch}, {steps} steps ({args.tokens:,} tokens), store {args.store}")
    print(f"{'setup':28} {'wall s':>8} {'loop s':>8} {'ms/step':>8} {'vs 1 proc 2 thr':>16}")
    ref = rows[0][2]
    for name, full, loop in rows:
        print(f"{name:28} {full:8.1f} {loop:8.1f} {loop / steps * 1000:8.1f} {ref / loop:15.2f}x")
    step2 = rows[2][2] / steps * 1000
    print(f"one all-reduce of the {n_params:,} fp32 gradients between 2 gloo ranks: {comm:.2f} ms = {comm / step2:.1%} of a 2-rank step")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
