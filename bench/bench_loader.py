"""Loader throughput vs its physical reference, measured in one run (the CPU is shared).

1. Array path: ImageLoader over a synth-aircraft-format dataset (64 px, memory-mapped,
   shuffled batches, part maps included) vs the bare work it cannot avoid: slicing the same
   sorted indices out of the memmap and one Preprocess.batch call per batch.
2. File path: ImageLoader over a folder of JPEGs (num_workers=0) vs a plain loop of
   PIL decode + Preprocess per image.

Run: python bench/bench_loader.py [--n 8192] [--batch 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from visae.artifact import write_marker
from visae.data.base import open_dataset
from visae.data.loader import ImageLoader
from visae.data.transforms import Preprocess


def write_synth(root: Path, n: int, size: int) -> None:
    root.mkdir(parents=True)
    write_marker(root, "synth-aircraft")
    info = {"format_version": 1, "seed": 0, "size": size, "splits": {"train": n}, "class_names": ["a", "b"],
            "ood_variants": [], "part_names": ["background", "body"]}
    (root / "info.json").write_text(json.dumps(info))
    (root / "hierarchy.json").write_text(json.dumps({"levels": ["variant"], "parents": {}}))
    d = root / "train"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "images.npy", rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    np.save(d / "parts.npy", rng.integers(0, 2, (n, size, size), dtype=np.uint8))
    with open(d / "manifest.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"index": i, "id": f"train/{i:06d}", "variant": "a", "label": i % 2}) + "\n")


def time_it(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_arrays(tmp: Path, n: int, batch: int, repeats: int) -> None:
    write_synth(tmp / "synth", n, 64)
    split = open_dataset(f"synth-aircraft:{tmp / 'synth'}").split("train")
    pre = Preprocess(size=64)
    loader = ImageLoader(split, pre, batch, shuffle=True, seed=0)
    chunks = loader.batch_indices(0)
    images = np.load(tmp / "synth" / "train" / "images.npy", mmap_mode="r")
    parts = np.load(tmp / "synth" / "train" / "parts.npy", mmap_mode="r")

    def raw():
        for idx in chunks:
            pre.batch(images[idx])

    def raw_with_parts():
        for idx in chunks:
            pre.batch(images[idx]), torch.from_numpy(parts[idx])

    def through_loader():
        loader.epoch = 0
        for _ in loader:
            pass

    raw(), raw_with_parts(), through_loader()  # warm the page cache
    t_raw, t_rawp, t_loader = [], [], []
    for _ in range(repeats):  # interleaved, so all see the same load
        t_raw.append(time_it(raw))
        t_rawp.append(time_it(raw_with_parts))
        t_loader.append(time_it(through_loader))
    r, rp, lo = min(t_raw), min(t_rawp), min(t_loader)
    print(f"array path, {n} images 64px, batch {batch}, best of {repeats}, interleaved:")
    print(f"  raw memmap slice + Preprocess.batch : {n / r:10.0f} images/s")
    print(f"  same + part-map slice              : {n / rp:10.0f} images/s")
    print(f"  ImageLoader (ids, labels, parts)   : {n / lo:10.0f} images/s")
    print(f"  ratio loader / raw                 : {r / lo:10.2f}")
    print(f"  ratio loader / raw with parts      : {rp / lo:10.2f}")


def bench_files(tmp: Path, n: int, repeats: int) -> None:
    root = tmp / "folder"
    rng = np.random.default_rng(1)
    for i in range(n):
        d = root / f"c{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(d / f"{i}.jpg", quality=90)
    split = open_dataset(f"folder:{root}").split("all")
    pre = Preprocess(size=64)
    files = [root / f for f in split.files]

    def raw():
        torch.stack([pre(np.asarray(Image.open(f).convert("RGB"))) for f in files])

    def through_loader():
        for _ in ImageLoader(split, pre, 64):
            pass

    raw(), through_loader()
    t_raw, t_loader = [], []
    for _ in range(repeats):
        t_raw.append(time_it(raw))
        t_loader.append(time_it(through_loader))
    r, lo = min(t_raw), min(t_loader)
    print(f"file path, {n} JPEGs 96x80 -> 64px, num_workers=0, best of {repeats}, interleaved:")
    print(f"  raw PIL decode + Preprocess loop   : {n / r:10.0f} images/s")
    print(f"  ImageLoader                        : {n / lo:10.0f} images/s")
    print(f"  ratio loader / raw                 : {r / lo:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192, help="images in the synth array")
    ap.add_argument("--files", type=int, default=512, help="JPEGs in the folder benchmark")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_arrays(Path(tmp), args.n, args.batch, args.repeats)
        bench_files(Path(tmp), args.files, args.repeats)


if __name__ == "__main__":
    main()
