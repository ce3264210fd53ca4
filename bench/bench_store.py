"""Activation store: write cost (incl. checksums), shuffled vs sequential read, and memory vs store size.

All numbers come from one run on the same shards (the page cache is warm after writing):

- write: tokens/s of StoreWriter (bf16, d=768) and the share of it spent hashing, for
  xxh3_128 (when xxhash is installed) and sha256;
- read: tokens/s of ``Store.batches`` shuffled vs the same call unshuffled, both yielding
  float32 batches of 4096 with prefetch, and vs the tokens/s of one 4096x768 @ 768x12288
  float32 GEMM (an SAE encoder alone): the reader must be faster than the trainer;
- mixing: the store is written class-sorted (20 classes, image after image, like an
  ImageFolder walk); the total-variation distance between the class histogram of 10
  consecutive shuffled batches and the global one, for the default stream (blocks of about
  256 KiB from all over the store) and for whole-shard blocks (the stream before 0.2);
- memory: peak RSS of a subprocess that streams one shuffled epoch and walks all images
  (iter_images) of a store and of one 10x larger.

    python bench/bench_store.py [--tokens 65536] [--d 768]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VISAE_QUIET", "1")

import numpy as np
import torch

from visae.store import Store, StoreMeta, StoreWriter
from visae.store.format import INDEX_DTYPE, default_checksum

PER_IMAGE = 64
BATCH = 4096
CLASSES = 20


def write(path: Path, n_tokens: int, d: int, shard_tokens: int) -> float:
    meta = StoreMeta(backbone="bench", layer="x", layout={"kind": "spatial", "dim": d, "grid": [8, 8]}, tokens="patch",
                     preprocess={}, dataset="bench", split="train", dtype="bf16", d=d, shard_tokens=shard_tokens,
                     planned_images=n_tokens // PER_IMAGE, checksum=default_checksum(), config={})  # fmt: skip
    g = torch.Generator().manual_seed(0)
    chunk = torch.randn(PER_IMAGE * 64, d, generator=g).to(torch.bfloat16)
    n_images = n_tokens // PER_IMAGE
    t = time.perf_counter()
    w = StoreWriter.create(path, meta)
    for first in range(0, n_images, 64):
        chunk[:, 0] = float(first * CLASSES // n_images)  # column 0: the class, images sorted by class
        rows = np.zeros(len(chunk), INDEX_DTYPE)
        rows["image"] = first + np.arange(len(chunk)) // PER_IMAGE
        rows["y"], rows["x"] = np.divmod(np.arange(len(chunk)) % PER_IMAGE, 8)
        w.add(chunk, rows, {i: f"img{i}" for i in range(first, first + 64)})
    w.close()
    return time.perf_counter() - t


def hash_seconds(store: Store, algo: str) -> float:
    import xxhash  # noqa: F401  (only called when installed, for xxh3)

    t = time.perf_counter()
    for s in store.meta.shards:
        h = xxhash.xxh3_128() if algo == "xxh3_128" else hashlib.sha256()
        with open(store.path / s.files["data"], "rb") as f:
            while b := f.read(1 << 24):
                h.update(b)
    return time.perf_counter() - t


def read_rate(store: Store, **kw) -> float:
    t, n = time.perf_counter(), 0
    for b in store.batches(BATCH, **kw):
        n += len(b)
    return n / (time.perf_counter() - t)


def mixing(store: Store, **kw) -> tuple[float, float]:
    """(mean, max) over windows of 10 consecutive batches of the total-variation distance between
    their class histogram and the store's (uniform) one."""
    hist = []
    for b in store.batches(BATCH, seed=0, **kw):
        hist.append(np.bincount(b[:, 0].long().numpy(), minlength=CLASSES))
    tv = [0.5 * np.abs(sum(hist[i : i + 10]) / (10 * BATCH) - 1 / CLASSES).sum() for i in range(len(hist) - 9)]
    return float(np.mean(tv)), float(np.max(tv))


def gemm_rate(d: int, width: int = 12288) -> float:
    x, w = torch.randn(BATCH, d), torch.randn(d, width) / d**0.5
    x @ w
    t, reps = time.perf_counter(), 5
    for _ in range(reps):
        x @ w
    return BATCH * reps / (time.perf_counter() - t)


PEAK = """
import resource, sys, torch
from visae.store import Store
s = Store(sys.argv[1])
n = sum(len(b) for b in s.batches(4096, seed=0, buffer_tokens=int(sys.argv[2])))
m = sum(len(t.tokens_TD) for t in s.iter_images(64))
print(n, m, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(path: Path, buffer_tokens: int) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", PEAK, str(path), str(buffer_tokens)], capture_output=True, text=True, check=True)
    n, _, kib = out.stdout.split()
    return int(n), int(kib) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=65536, help="tokens of the small store (the large one has 10x)")
    ap.add_argument("--d", type=int, default=768)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="visae-bench-store-"))
    try:
        small, large = root / "small", root / "large"
        shard = 16384
        write(small, args.tokens, args.d, shard)
        dt = write(large, 10 * args.tokens, args.d, shard)
        store = Store(large)
        nbytes = sum((large / s.files["data"]).stat().st_size for s in store.meta.shards)
        print(f"store: {len(store):,} tokens x {args.d} bf16 = {nbytes / 2**20:,.0f} MiB in {len(store.meta.shards)} shards of {shard}")
        print(f"write: {len(store) / dt:,.0f} tok/s ({nbytes / dt / 2**20:,.0f} MiB/s) incl. fsync, stats, {store.meta.checksum} checksums")
        for algo in (["xxh3_128"] if store.meta.checksum == "xxh3_128" else []) + ["sha256"]:
            hs = hash_seconds(store, algo)
            print(f"  hashing with {algo}: {nbytes / hs / 2**20:,.0f} MiB/s = {hs / dt:.1%} of the write time")
        seq = read_rate(store, shuffle=False)
        shuf = read_rate(store, shuffle=True, seed=0)
        gemm = gemm_rate(args.d)
        for label, kw in (("blocks of ~256 KiB (default)", {}), ("whole shards (before 0.2)", {"block_tokens": shard})):
            mean, worst = mixing(store, **kw)
            print(f"class mixing, {label}: TV distance of 10 consecutive batches to the global histogram "
                  f"mean {mean:.3f}, max {worst:.3f} ({CLASSES} classes, store class-sorted)")
        print(f"read fp32 batches of {BATCH}: sequential {seq:,.0f} tok/s, shuffled {shuf:,.0f} tok/s -> shuffled/sequential {shuf / seq:.2f} (target >= 0.5)")
        print(f"encoder GEMM {BATCH}x{args.d} @ {args.d}x12288 fp32: {gemm:,.0f} tok/s -> shuffled reader / GEMM {shuf / gemm:.1f}x")
        buf = 4 * shard
        (n1, r1), (n2, r2) = peak_rss(small, buf), peak_rss(large, buf)
        print(f"peak RSS streaming one shuffled epoch + all images (buffer {buf} tokens): {n1:,} tokens {r1:,.0f} MiB, "
              f"{n2:,} tokens {r2:,.0f} MiB -> ratio {r2 / r1:.2f} for 10x the tokens")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
