"""Benchmark distributed training on this machine: 1 process vs 2 torchrun ranks (gloo), same global batch.

Trains the same TopK SAE on a store (default: the demo's, ``visae demo`` first) in fresh processes: one process
with 2 torch threads, one with 1 thread, and ``torchrun --nproc-per-node 2`` with 1 thread per rank in each
``--parallel`` mode (data with the global and the split stream, latents); then a sweep of 2 SAEs in one process
vs ``--parallel sweep``. Prints the wall time of the training loop (the command's wall time minus that of a
2-step run) and the communication share of a 2-rank step: data-parallel, one all-reduce of the SAE's
gradient-sized fp32 buffer; latent-sharded, one all-gather of the [B, k] candidates plus one all-reduce of the
[B, d] partial reconstructions and of d + 1 gradient values, each divided by that mode's measured step time.

    python bench/bench_distributed.py [--store runs/demo/store] [--d-sae 12288] [--tokens 1000000] [--batch 4096]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


def clean_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return env | {"OMP_NUM_THREADS": str(threads), "VISAE_QUIET": "1", "VISAE_DIST_TIMEOUT": "600"}


K = 16


def train(store: Path, out: Path, ranks: int, threads: int, args: argparse.Namespace, tokens: int, extra: list[str]) -> float:
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else [sys.executable]
    sae = extra if "--config" in extra else ["--arch", "topk", "--k", str(K), "--d-sae", str(args.d_sae), *extra]
    cmd = [*head, "-m", "visae", "train", "--store", str(store), "--out", str(out), *sae, "--training-tokens", str(tokens),
           "--batch-size", str(args.batch), "--holdout", "0", "--device", "cpu", "--force"]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, env=clean_env(threads), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


COMM = textwrap.dedent('''
    import sys, time, torch
    from visae.distributed import shutdown, world
    reduce_n, gather_n, reps = int(sys.argv[1]), int(sys.argv[2]), 20
    w = world()
    t, g = torch.randn(reduce_n), torch.randn(gather_n)
    def once():
        w.all_reduce(t, "bench")
        if gather_n:
            w.all_gather(g, "bench")
    once()
    w.barrier("start")
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    if w.main:
        print(f"{(time.perf_counter() - t0) / reps * 1000:.3f}")
    shutdown()
''')


def comm_ms(reduce_n: int, gather_n: int = 0) -> float:
    """Milliseconds of one all-reduce of ``reduce_n`` fp32 values (plus one all-gather of ``gather_n``) between 2 gloo ranks."""
    script = Path(tempfile.mkdtemp()) / "comm.py"
    script.write_text(COMM)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), str(reduce_n), str(gather_n)], env=clean_env(1), capture_output=True, text=True, check=True).stdout  # fmt: skip
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("runs/demo/store"))
    ap.add_argument("--d-sae", type=int, default=12288)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    from visae.store import Store

    d = Store(args.store).d
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    sweep = work / "sweep.toml"
    sweep.write_text(f"d_sae = {args.d_sae}\n[[sae]]\narch = 'topk'\nk = {K}\n[[sae]]\narch = 'topk'\nk = {2 * K}\n")
    steps = args.tokens // args.batch
    setups = [("1 process, 2 threads", 1, 2, []), ("1 process, 1 thread", 1, 1, []),
              ("2 ranks, data, global stream", 2, 1, ["--stream", "global"]),
              ("2 ranks, data, split stream", 2, 1, ["--stream", "split"]),
              ("2 ranks, latents", 2, 1, ["--parallel", "latents"]),
              ("sweep of 2: 1 process, 2 thr", 1, 2, ["--config", str(sweep)]),
              ("sweep of 2: 2 ranks, sweep", 2, 1, ["--config", str(sweep), "--parallel", "sweep"])]  # fmt: skip
    rows = {}
    for name, ranks, threads, extra in setups:
        base = train(args.store, work / "base", ranks, threads, args, args.batch * 2, extra)  # start-up + 2 steps
        full = train(args.store, work / "run", ranks, threads, args, args.tokens, extra)
        rows[name] = (full, max(full - base, 1e-9))
    n_params = 2 * d * args.d_sae + args.d_sae + d
    data_comm = comm_ms(n_params)
    shard_comm = comm_ms(args.batch * d + d + 1, args.batch * K)
    print(f"TopK SAE d {d} -> {args.d_sae} (k {K}), global batch {args.batch}, {steps} steps ({args.tokens:,} tokens), store {args.store}")
    print(f"{'setup':32} {'wall s':>8} {'loop s':>8} {'ms/step':>8} {'vs 1 process':>13}")
    for name, (full, loop) in rows.items():
        ref = rows["sweep of 2: 1 process, 2 thr" if name.startswith("sweep") else "1 process, 2 threads"][1]
        print(f"{name:32} {full:8.1f} {loop:8.1f} {loop / steps * 1000:8.1f} {ref / loop:12.2f}x")
    for what, ms, name in (("data: one all-reduce of the {:,} fp32 gradients".format(n_params), data_comm, "2 ranks, data, global stream"),
                           (f"latents: all-gather of {args.batch}x{K} candidates + all-reduce of {args.batch}x{d} partials", shard_comm,
                            "2 ranks, latents")):  # fmt: skip
        step = rows[name][1] / steps * 1000
        print(f"{what}: {ms:.2f} ms = {ms / step:.1%} of a step")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
