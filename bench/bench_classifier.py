"""Benchmark of the classifier stage: accuracy and wall time of the default classifier.

    python bench/bench_classifier.py [--data synth-aircraft:DIR] [--epochs N] [--no-append]

1. generates the default synth-aircraft data (unless --data names an existing one);
2. trains the default classifier (`visae classifier train` defaults) and reports val top-1
   (overall and per hierarchy level) and the training wall time;
3. times a training step of the default model in fp32 and bf16 autocast (channels-last
   and not), interleaved in one run, and reports the bf16/fp32 ratio;
4. sets that ratio against its physical reference: the bf16/fp32 time ratio of a bare
   1024^3 GEMM timed in the same run (what bf16 can buy on this CPU at best).

Appends a section to bench/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from visae.classifier import ClassifierConfig, train_classifier
from visae.classifier.model import build_random
from visae.classifier.runtime import set_threads
from visae.classifier.speed import choose_speed
from visae.data.base import open_dataset
from visae.data.loader import ImageLoader
from visae.data.transforms import Preprocess

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Classifier (bench/bench_classifier.py)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="an existing data spec; default: generate the default synth-aircraft data")
    ap.add_argument("--epochs", type=int, help="override the default number of epochs")
    ap.add_argument("--no-append", action="store_true", help="print only; do not touch bench/RESULTS.md")
    args = ap.parse_args()
    threads = set_threads(0)
    work = Path(tempfile.mkdtemp(prefix="bench_classifier_"))
    spec, gen_s = args.data, 0.0
    if spec is None:
        from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft

        t0 = time.perf_counter()
        generate_synth_aircraft(SynthAircraftConfig(out=work / "data"))
        gen_s = time.perf_counter() - t0
        spec = f"synth-aircraft:{work / 'data'}"
    cfg = ClassifierConfig.build(data=spec, out=work / "classifier", epochs=args.epochs)
    t0 = time.perf_counter()
    out = train_classifier(cfg)
    wall_s = time.perf_counter() - t0
    meta = json.loads((out / "visae_classifier.json").read_text())
    steps = step_times(cfg, spec)
    gemm = gemm_rates()
    flags = (f" --data {args.data}" if args.data else "") + (f" --epochs {args.epochs}" if args.epochs else "")
    lines = report(cfg, meta, wall_s, gen_s, steps, gemm, threads, flags)
    print("\n".join(lines))
    if not args.no_append:
        append(lines)


def step_times(cfg: ClassifierConfig, spec: str) -> dict:
    """Median step time of each compute variant of the default model (interleaved), and its FLOPs."""
    ds = open_dataset(spec)
    model = build_random(cfg, ds.class_names, 64)
    batch = next(iter(ImageLoader(ds.split("train"), Preprocess(size=64, crop_pct=1.0), cfg.batch_size, shuffle=True)))
    speed = choose_speed(model, batch.pixels_BCHW, batch.labels_B, "auto", "auto", steps=8)
    return {"step_ms": speed.step_ms, "best": speed.name, "batch": cfg.batch_size}


def gemm_rates(n: int = 1024, reps: int = 10) -> dict[str, float]:
    """GFLOP/s of a bare n x n x n matmul in fp32 and bf16: the machine's compute ceiling."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        rates[str(dtype).removeprefix("torch.")] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    return rates


def report(cfg, meta, wall_s, gen_s, steps, gemm, threads, flags) -> list[str]:  # noqa: ANN001
    ms = steps["step_ms"]
    levels = ", ".join(f"{k} {v:.3f}" for k, v in meta["val"].get("levels", {}).items())
    size = meta["preprocess"]["size"]
    model = (f"ConvNeXt patch {cfg.patch_size}, widths {list(cfg.hidden_sizes)}, depths {list(cfg.depths)}, "
             f"layer scale {cfg.layer_scale_init}, {cfg.weight_init} init, batch {cfg.batch_size}, lr {cfg.lr}, {size} px")
    return [
        SECTION,
        "",
        f"`python bench/bench_classifier.py{flags}` ({time.strftime('%Y-%m-%d')}, {threads} threads, "
        "CPU shared with other engineers' jobs: absolute times are inflated, ratios are from one run)",
        "",
        f"- data: {'given' if flags.startswith(' --data') else f'default synth-aircraft generated in {gen_s:.0f} s'}; "
        f"{len(meta['class_names'])} classes; model: {model}",
        f"- classifier: **val top-1 {meta['val_top1']:.3f}** ({levels}; n={meta['val']['n']}), "
        f"top-5 {meta['val']['top5']:.3f}, final train top-1 {meta['train_top1']:.3f}",
        f"- training: {meta['epochs']} epochs in {meta['train_seconds']:.0f} s "
        f"(wall {wall_s:.0f} s with data opening, speed probe, final eval and save), compute {meta['compute']['dtype']}"
        f"{' channels-last' if meta['compute']['channels_last'] else ''}",
        f"- training step (batch {steps['batch']}, median of 8, interleaved): "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in ms.items())
        + f"; **bf16/fp32 step-time ratio {ms['bf16'] / ms['fp32']:.2f}** (channels-last: "
        f"{ms['bf16+cl'] / ms['fp32+cl']:.2f}); fastest {steps['best']}",
        f"- physical reference: a bare 1024^3 GEMM runs at {gemm['float32']:.0f} GFLOP/s fp32 and "
        f"{gemm['bfloat16']:.0f} GFLOP/s bf16, a bf16/fp32 time ratio of {gemm['float32'] / gemm['bfloat16']:.2f}; "
        "the model's step gains less because depthwise convs and LayerNorms do not speed up in bf16",
        "",
    ]


def append(lines: list[str]) -> None:
    """Replace this benchmark's section of RESULTS.md (or add it), keeping the others."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start = text.find(SECTION + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + text[end + 1 if end >= 0 else len(text) :]
    tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines))
    os.replace(tmp, RESULTS)
    print(f"appended to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
