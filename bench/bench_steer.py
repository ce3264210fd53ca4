"""Benchmark the causal tests on a finished demo run (``visae demo`` first).

- ``steer``: one ``visae.steer`` call on N images after the model has loaded (a ``Steerer`` reused), against
  its physical reference, the two bare forward passes (clean and edited) of the same images, and against
  the 3 s target;
- ``steer-eval``: the whole ``visae steer-eval`` in a fresh process, model loading included, against the
  2 min target, with the share of each test.

    python bench/bench_steer.py [--run runs/demo/sae] [--images 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def one_steer(run: Path, n_images: int, repeats: int) -> dict[str, float]:
    import visae
    from visae.steering.session import Steerer

    t0 = time.perf_counter()
    s = Steerer.open(run, device="cpu")
    load = time.perf_counter() - t0
    ids = [s.dataset.split(s.store_split).image_id(i) for i in range(n_images)]
    latent = int(s.max_act().argmax())
    out = Path(tempfile.mkdtemp(prefix="bench-steer-"))
    times, bare = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        visae.steer(run=run, image=ids, latent=[latent], set="-2x", out=out, steerer=s)
        times.append(time.perf_counter() - t)
        imgs = s.images(s.store_split, s.find_images(ids))
        t = time.perf_counter()
        with torch.no_grad():
            s.backbone.forward(imgs.pixels_BCHW)
            s.backbone.forward(imgs.pixels_BCHW)
        bare.append(time.perf_counter() - t)
    best, ref = min(times), min(bare)
    return {"load_s": load, "steer_s": best, "bare_forwards_s": ref, "ratio_to_bare": best / ref, "ratio_to_target": best / 3.0}


def steer_eval(run: Path) -> float:
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="bench-steer-eval-")) / "sae"
    shutil.copytree(run, tmp, ignore=shutil.ignore_patterns("steer", "heatmaps"))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "visae", "steer-eval", "--run", str(tmp), "--device", "cpu"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo/sae"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    r = one_steer(args.run, args.images, args.repeats)
    print(f"steer on {args.images} images after loading ({r['load_s']:.1f} s to load): {r['steer_s']:.3f} s; two bare forwards "
          f"{r['bare_forwards_s']:.4f} s (ratio {r['ratio_to_bare']:.0f}x); target 3 s: {r['ratio_to_target']:.3f} of it")
    t = steer_eval(args.run)
    print(f"steer-eval, fresh process, model loading included: {t:.1f} s; target 120 s: {t / 120:.3f} of it")


if __name__ == "__main__":
    main()
