"""The two timed checks of bench/gpu_check.sh, each against its physical reference, in one process.

    python bench/bench_gpu.py --device cuda [--json results.json]
    python bench/bench_gpu.py --device cpu --small      # tiny sizes: checks the script itself on a CPU

sae      one visae TopK SAE training step (forward, loss, backward, Adam, decoder re-normalisation,
         bf16 autocast) vs one bare bf16 GEMM of the encoder's shape [B, D] @ [D, S]; bench_sae_common's
         shape (d 768, width 12288, k 32, batch 4096). The two are timed alternately; ratio = GEMM / step,
         the fraction of the ideal "a step costs one encoder GEMM" (as in bench_sae.py).
extract  `extract()` of a ViT-B-sized random-init model (transformers ViTModel: 224 px, patch 16, 12 layers,
         d 768; saved with save_pretrained, loaded as hf:DIR) into a bf16 store of the last block's patch
         tokens vs a bare forward of the same model over the same preprocessed batches, already on the
         device, under the same autocast. Alternating runs, best of each; ratio = extract / bare (>= 1).
         The extraction includes reading and preprocessing the images on the CPU, the host-to-device copies,
         the device-to-host copies of the tokens, checksums, statistics and the atomic shard writes; the
         loader alone (read + preprocess + pin) is timed too, to show which side bounds the extraction.

On a GPU the timings wait for the device (torch.cuda.synchronize) before reading the clock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("VISAE_QUIET", "1")

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_sae_common import B, D, K, S  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns: dict[str, Callable[[], None]], device: torch.device, reps: int, inner: dict[str, int]) -> dict[str, float]:
    """Median seconds of one call of each function, the functions timed in turn (``inner`` calls per timing)."""
    for fn in fns.values():  # warm-up (kernels, autotuning, allocator)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner.get(name, 1)):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) / inner.get(name, 1))
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_sae(device: torch.device, d: int, s: int, k: int, b: int, reps: int) -> dict:
    from visae.sae import create_sae
    from visae.sae.member import Member
    from visae.sae.train_config import SAEHparams, TrainConfig

    torch.manual_seed(0)
    cfg = TrainConfig.build(store="-", out="-", dtype="bf16", lr_warmup=0, lr_decay=0, device=str(device))
    hp = SAEHparams(arch="topk", k=k, d_sae=s, lr=1e-3)
    member = Member(hp, create_sae(hp.spec(d)).to(device), cfg, total_steps=10**6, dead_tokens=10**9)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(b, d, generator=g).to(device) for _ in range(4)]  # mean squared norm d, as normalised
    x_bf = torch.randn(b, d, generator=g).to(device, torch.bfloat16)
    W_bf = (torch.randn(d, s, generator=g) / d**0.5).to(device, torch.bfloat16)
    step = iter(range(10**9))

    def sae_step() -> None:
        i = next(step)
        member.step(batches[i % len(batches)], i, measure=False)

    t = alternate({"gemm": lambda: x_bf @ W_bf, "step": sae_step}, device, reps, inner={"gemm": 20})
    flops = 2 * b * d * s
    row = {"check": "sae", "shape": f"d {d}, width {s}, k {k}, batch {b}", "ref": "bare bf16 encoder GEMM",
           "ref_ms": 1e3 * t["gemm"], "ms": 1e3 * t["step"], "ratio": t["gemm"] / t["step"],
           "note": f"GEMM {flops / t['gemm'] / 1e12:.3g} TFLOP/s; step {b / t['step']:,.0f} tok/s"}  # fmt: skip
    return row


def make_vit(root: Path, small: bool) -> tuple[Path, int]:
    """A random-init ViT saved locally; (its directory, its input side)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if small:
        cfg = ViTConfig(image_size=64, patch_size=16, hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                        intermediate_size=768)  # fmt: skip
    else:  # ViT-B/16
        cfg = ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072)  # fmt: skip
    torch.manual_seed(0)
    ViTModel(cfg).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": cfg.image_size, "width": cfg.image_size}).save_pretrained(root / "vit")
    return root / "vit", cfg.image_size


def last_block(bb) -> str:
    """The deepest transformer block's name, whatever transformers' version calls the list."""
    blocks = [(int(m.group(1)), li.name) for li in bb.layers() if (m := re.search(r"layers?\.(\d+)$", li.name))]
    return max(blocks)[1]


def bench_extract(device: torch.device, small: bool, n_images: int, batch: int, repeats: int) -> dict:
    from bench_extract import make_data

    from visae.backbones.base import load_backbone
    from visae.data.base import open_dataset
    from visae.data.loader import ImageLoader
    from visae.extraction import ExtractConfig, extract
    from visae.store import Store

    root = Path(tempfile.mkdtemp(prefix="visae-gpu-check-extract-"))
    try:
        model_dir, size = make_vit(root, small)
        data_dir = make_data(root, n_images, size=size)
        bb = load_backbone(f"hf:{model_dir}", device=device)
        layer = last_block(bb)
        split = open_dataset(f"synth-aircraft:{data_dir}").split("train")
        staged = [b.pixels_BCHW.to(device) for b in ImageLoader(split, bb.preprocess, batch)]
        cfg = ExtractConfig(model=f"hf:{model_dir}", layers=[layer], data=f"synth-aircraft:{data_dir}",
                            out=root / "store", batch_size=batch, device=str(device), force=True)  # fmt: skip

        def bare() -> float:
            sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                for pixels in staged:
                    bb.model(pixel_values=pixels)
            sync(device)
            return time.perf_counter() - t0

        def loader_only() -> float:  # what the CPU side alone costs: read + preprocess (+ pin on a GPU)
            t0 = time.perf_counter()
            for _ in ImageLoader(split, bb.preprocess, batch, pin_memory=device.type == "cuda"):
                pass
            return time.perf_counter() - t0

        def extraction() -> float:
            shutil.rmtree(cfg.out, ignore_errors=True)
            t0 = time.perf_counter()
            extract(cfg, backbone=bb)
            return time.perf_counter() - t0

        bare()  # warm-up
        runs = [(bare(), loader_only(), extraction()) for _ in range(repeats)]
        t_bare, t_load, t_ext = (min(r[i] for r in runs) for i in range(3))
        store = Store(cfg.out)
        shape = f"ViT {'tiny' if small else 'B/16'} {size} px, {layer}, {n_images} img, batch {batch}"
        return {"check": "extract", "shape": shape, "ref": "bare forward (batches on device)",
                "ref_ms": 1e3 * t_bare, "ms": 1e3 * t_ext, "ratio": t_ext / t_bare,
                "loader_ms": 1e3 * t_load,
                "note": f"{n_images / t_ext:,.0f} img/s, {len(store) / t_ext:,.0f} tok/s into a bf16 store; "
                        f"bare forward {n_images / t_bare:,.0f} img/s, loader alone {n_images / t_load:,.0f} img/s"}  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda[:N] or cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes (a CPU check of the script, not a measurement)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    from visae.device import resolve_device

    device = resolve_device(a.device)
    if a.small:
        rows = [bench_sae(device, 256, 2048, 16, 512, reps=3), bench_extract(device, True, 48, 16, repeats=2)]
    else:
        rows = [bench_sae(device, D, S, K, B, reps=20), bench_extract(device, False, 2048, 128, repeats=2)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}); torch {torch.__version__}")
    print(f"{'check':<8} {'ref ms':>9} {'ms':>9} {'ratio':>7}  what")
    for r in rows:
        print(f"{r['check']:<8} {r['ref_ms']:>9.2f} {r['ms']:>9.2f} {r['ratio']:>7.3f}  {r['shape']}; vs {r['ref']}; {r['note']}")
    if a.json:
        a.json.write_text(json.dumps({"device": str(device), "name": name, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
