"""Extraction throughput vs the bare model forward (same model, batches, dtype), in one run.

A small random-init ConvNeXt (transformers, saved locally and loaded as hf:DIR) at 64 px
over synth-aircraft-format arrays; the layer is the last stage (8x8 grid, d=256). The
bare forward runs the same model on the same preprocessed batches held in memory; the
extraction includes loading, preprocessing, capture, token layout, bf16 rounding,
checksums, statistics and atomic shard commits. Runs alternate and the best of each is
kept (the CPU is shared).

    python bench/bench_extract.py [--images 512] [--batch 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VISAE_QUIET", "1")

import numpy as np
import torch
from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

from visae.artifact import write_marker
from visae.backbones.base import load_backbone
from visae.data.base import open_dataset
from visae.data.loader import ImageLoader
from visae.extraction import ExtractConfig, extract

LAYER = "encoder.stages.2"


def make_model(root: Path) -> Path:
    torch.manual_seed(0)
    cfg = ConvNextConfig(patch_size=2, num_stages=3, hidden_sizes=[64, 128, 256], depths=[2, 2, 4], image_size=64)
    ConvNextModel(cfg).save_pretrained(root / "model")
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=1.0).save_pretrained(root / "model")
    return root / "model"


def make_data(root: Path, n: int, size: int = 64) -> Path:
    """A synth-aircraft-format dataset of smooth random images (one split, 'train')."""
    d = root / "data"
    (d / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (n, size // 8, size // 8, 3)).astype(np.uint8)
    np.save(d / "train" / "images.npy", low.repeat(8, axis=1).repeat(8, axis=2))
    np.save(d / "train" / "parts.npy", np.zeros((n, size, size), np.uint8))
    rows = [{"index": i, "id": f"train/{i:06d}", "variant": "v0", "family": "f0", "manufacturer": "m0", "label": 0} for i in range(n)]
    (d / "train" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {"format_version": 1, "seed": 0, "size": size, "splits": {"train": n}, "class_names": ["v0"],
            "ood_variants": [], "part_names": ["background"]}  # fmt: skip
    (d / "info.json").write_text(json.dumps(info))
    hier = {"levels": ["variant", "family", "manufacturer"], "parents": {"variant": {"v0": "f0"}, "family": {"f0": "m0"}}}
    (d / "hierarchy.json").write_text(json.dumps(hier))
    write_marker(d, "synth-aircraft")
    return d


def bare_forward(bb, batches: list[torch.Tensor]) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        for pixels in batches:
            bb.model(pixel_values=pixels)
    return time.perf_counter() - t


def run_extract(cfg: ExtractConfig, bb) -> float:
    shutil.rmtree(cfg.out, ignore_errors=True)
    t = time.perf_counter()
    extract(cfg, backbone=bb)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="visae-bench-extract-"))
    try:
        model_dir, data_dir = make_model(root), make_data(root, args.images)
        bb = load_backbone(f"hf:{model_dir}")
        split = open_dataset(f"synth-aircraft:{data_dir}").split("train")
        batches = [b.pixels_BCHW for b in ImageLoader(split, bb.preprocess, args.batch)]
        cfg = ExtractConfig(model=f"hf:{model_dir}", layers=[LAYER], data=f"synth-aircraft:{data_dir}",
                            out=root / "store", batch_size=args.batch)  # fmt: skip
        bare_forward(bb, batches[:2])  # warm-up
        bare, ext = [], []
        for _ in range(args.repeats):
            bare.append(bare_forward(bb, batches))
            ext.append(run_extract(cfg, bb))
        from visae.store import Store

        s = Store(cfg.out)
        n_tok = len(s)
        print(f"model: ConvNeXt 3 stages [64,128,256] depths [2,2,4], 64 px, layer {LAYER} -> {s.meta.layout['grid']} x {s.d}")
        print(f"{args.images} images, batch {args.batch}, {n_tok:,} tokens, bf16 store, threads {torch.get_num_threads()}")
        print(f"bare forward : {min(bare):.2f} s  ({args.images / min(bare):.0f} img/s)   runs {[round(x, 2) for x in bare]}")
        print(f"extraction   : {min(ext):.2f} s  ({args.images / min(ext):.0f} img/s, {n_tok / min(ext):,.0f} tok/s)   runs {[round(x, 2) for x in ext]}")
        print(f"extraction / bare forward time: {min(ext) / min(bare):.3f}  (target <= 1.15)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
