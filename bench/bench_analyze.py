"""Benchmark `visae analyze`: peak memory flat in the store size, time close to one encoding pass.

Builds two synthetic stores 10x apart (ViT-like 14x14 patch grid + CLS, bf16), a random
ReLU SAE, and a part-annotated image source, then measures in fresh subprocesses:

- ``encode``: the physical reference, one pass over the store doing only
  ``store.iter_images`` + ``sae.encode`` (what any analysis must at least do);
- ``analyze``: the full ``analyze()`` (statistics, three top-k rankings with maps, top
  patches for the SAE and the raw channels, part purity, labels, SQLite DB).

Prints peak RSS of each child (ru_maxrss) and the time ratio analyze / encode.

    python bench/bench_analyze.py [--images 200] [--d 256] [--width 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SCHEME = "bench-parts"
SIZE, GRID = 56, 14


def register_source() -> None:
    from visae.data.base import SOURCES, ArraySplit, Dataset

    class _Split(ArraySplit):
        def __init__(self, data):
            self.name, self.d = "train", data

        def __len__(self):
            return len(self.d["labels"])

        def images(self, idx):
            return self.d["images"][np.asarray(idx)]

        def parts(self, idx):
            return self.d["parts"][np.asarray(idx)]

        def image_id(self, i):
            return f"img{i}"

        @property
        def labels(self):
            return np.asarray(self.d["labels"])

    class _Dataset(Dataset):
        def __init__(self, rest):
            self.spec = f"{SCHEME}:{rest}"
            self.class_names = [f"class{i}" for i in range(10)]
            self.part_names = ["background", "nose", "wing", "tail"]
            with np.load(rest) as z:
                self._split = _Split({k: z[k] for k in z.files})

        def split_names(self):
            return ["train"]

        def _open_split(self, name):
            return self._split

    if SCHEME not in SOURCES:
        SOURCES.register(SCHEME)(_Dataset)


def build(root: Path, n_images: int, d: int, width: int) -> tuple[Path, Path]:
    """A store of n_images (197 tokens each, bf16) and a trained-looking run over it."""
    from visae.artifact import write_marker
    from visae.sae import SAESpec, create_sae
    from visae.sae.saelens import save_saelens
    from visae.store import StoreMeta, StoreWriter
    from visae.store.format import INDEX_DTYPE

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_images)
    parts = np.zeros((n_images, SIZE, SIZE), np.uint8)
    parts[:, :20], parts[:, 20:40, :28], parts[:, 20:40, 28:] = 1, 2, 3
    images = rng.integers(0, 255, (n_images, SIZE, SIZE, 3), dtype=np.uint8)
    data = root / "data.npz"
    np.savez(data, images=images, parts=parts, labels=labels)
    layout = {"kind": "sequence", "dim": d, "grid": [GRID, GRID], "n_cls": 1, "n_registers": 0, "channels_last": False}
    meta = StoreMeta(backbone="hf:bench", layer="blocks.6", layout=layout, tokens="all",
                     preprocess={"size": SIZE, "crop_pct": 1.0}, dataset=f"{SCHEME}:{data}", split="train",
                     dtype="bf16", d=d, shard_tokens=65536, planned_images=n_images, checksum="sha256", config={})
    store = root / "store"
    store.mkdir()
    w = StoreWriter.create(store, meta)
    N = 1 + GRID * GRID
    basis = torch.randn(64, d)
    for a in range(0, n_images, 64):
        b = min(a + 64, n_images)
        coef = torch.relu(torch.randn((b - a) * N, 64)) ** 2
        rows = np.zeros((b - a) * N, dtype=INDEX_DTYPE)
        rows["image"] = np.repeat(np.arange(a, b), N)
        rows["label"] = np.repeat(labels[a:b], N)
        kind = np.zeros(N, np.int8)
        kind[0] = 1
        y = np.r_[-1, np.arange(GRID * GRID) // GRID]
        x = np.r_[-1, np.arange(GRID * GRID) % GRID]
        rows["kind"], rows["y"], rows["x"] = np.tile(kind, b - a), np.tile(y, b - a), np.tile(x, b - a)
        w.add(coef @ basis + 0.1 * torch.randn((b - a) * N, d), rows, {i: f"img{i}" for i in range(a, b)})
    w.close()
    torch.manual_seed(0)
    sae = create_sae(SAESpec(arch="relu", d_in=d, d_sae=width))
    with torch.no_grad():
        sae.b_enc.fill_(-2.5)  # a few % of latents fire per token, as after training
    sae.meta = {"backbone": "hf:bench", "layer": "blocks.6", "store": str(store), "run_sae": "relu"}
    run = root / "run"
    run.mkdir()
    save_saelens(sae, run / "saes" / "relu")
    write_marker(run, "sae-run", saes=["relu"], complete=True)
    return run, store


def child(mode: str, run: str, store: str, batch: int) -> None:
    torch.set_num_threads(2)
    register_source()
    os.environ["VISAE_QUIET"] = "1"
    t0 = time.perf_counter()
    if mode == "encode":
        from visae.analysis.inputs import encode, open_sae, read_run
        from visae.store import Store

        s, sae = Store(store), open_sae(read_run(run).sae_dir)
        n = 0
        with torch.no_grad():
            for item in s.iter_images(batch):
                n += int((encode(sae, item.tokens_TD) > 0).sum())
    else:
        from visae.analysis import AnalyzeConfig, analyze

        analyze(AnalyzeConfig(run=Path(run), store=Path(store), top=32, batch_images=batch, force=True))
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": dt, "peak_mib": peak}))


def measure(mode: str, run: Path, store: Path, batch: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(run), str(store), str(batch)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200, help="images in the small store (the large one has 10x)")
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
    register_source()
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for n in (args.images, 10 * args.images):
            root = Path(tmp) / str(n)
            root.mkdir()
            run, store = build(root, n, args.d, args.width)
            res[n] = {m: measure(m, run, store, args.batch) for m in ("encode", "analyze")}
            tokens = n * (1 + GRID * GRID)
            r = res[n]
            print(f"{n:6d} images ({tokens:,} tokens, D={args.d}, S={args.width}): encode pass "
                  f"{r['encode']['seconds']:.1f} s, {r['encode']['peak_mib']:.0f} MiB peak | analyze "
                  f"{r['analyze']['seconds']:.1f} s, {r['analyze']['peak_mib']:.0f} MiB peak | "
                  f"time ratio analyze/encode {r['analyze']['seconds'] / r['encode']['seconds']:.2f}")
        small, large = res[args.images]["analyze"], res[10 * args.images]["analyze"]
        print(f"peak memory of analyze, 10x the store: {large['peak_mib']:.0f} / {small['peak_mib']:.0f} MiB "
              f"= {large['peak_mib'] / small['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
