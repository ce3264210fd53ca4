"""Benchmark the procedural aircraft generator against its physical references.

Measured in one run (the CPU is shared, only ratios within a run mean much):

- ``generate``: ``generate_synth_aircraft`` end to end (render + memmap writes + manifest +
  fsync/rename + preview), with 1 and with N workers: images/s;
- ``render 1 proc``: sampling factors + rendering chunks in this process, nothing written;
- ``PIL only``: replaying the exact polygons of those images into fresh canvases (PIL's C
  fill, the 2x RGB canvas reduced to 1x, the 1x part map): the floor of any PIL-based
  rasteriser; no geometry, no backgrounds, no sampling;
- ``np.save``: writing the same bytes (images + part maps) with ``np.save`` to the same disk.

Besides wall-clock img/s it reports CPU time per image (this process and its workers), which
the other jobs on a shared machine disturb far less: ``2000 / CPU ms`` is the throughput
two free cores would give.

Run: ``.venv/bin/python bench/bench_synth.py [--n 4096] [--size 64] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

os.environ.setdefault("VISAE_QUIET", "1")

from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft  # noqa: E402
from visae.data.synth.generate import CHUNK, assign_variants  # noqa: E402
from visae.data.synth.factors import sample_factors  # noqa: E402
from visae.data.synth.geometry import variant_geometry  # noqa: E402
from visae.data.synth.render import SUPERSAMPLE, draw_aircraft, draw_distractor, render_chunk  # noqa: E402


class Recorder:
    """Stands in for ImageDraw: keeps the polygons instead of filling them."""

    def __init__(self) -> None:
        self.polys: list[tuple[list[float], object]] = []

    def polygon(self, xy, fill=None) -> None:
        self.polys.append((xy, fill))


def record(factors: list[dict], size: int) -> list[tuple[Recorder, Recorder]]:
    out = []
    for f in factors:
        rgb, part = Recorder(), Recorder()
        for d in f["distractors"]:
            if not d["front"]:
                draw_distractor(rgb, None, d, size * SUPERSAMPLE)
        draw_aircraft(rgb, part, variant_geometry(f["variant"]), f, size * SUPERSAMPLE)
        for d in f["distractors"]:
            if d["front"]:
                draw_distractor(rgb, part, d, size * SUPERSAMPLE)
        out.append((rgb, part))
    return out


def pil_only(recorded: list[tuple[Recorder, Recorder]], size: int) -> None:
    for rgb, part in recorded:
        canvas, parts = Image.new("RGB", (size * SUPERSAMPLE,) * 2), Image.new("L", (size, size))
        d_rgb, d_part = ImageDraw.Draw(canvas), ImageDraw.Draw(parts)
        for xy, fill in rgb.polys:
            d_rgb.polygon(xy, fill=fill)
        for xy, fill in part.polys:
            d_part.polygon(xy, fill=fill)
        np.asarray(canvas.reduce(SUPERSAMPLE)), np.asarray(parts)


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``fn()``."""
    t, c = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - t, cpu_seconds() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="images per measurement")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many interleaved repeats")
    args = ap.parse_args()
    n, size = args.n, args.size
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    variants = assign_variants(0, 0, "train", n)
    rng = np.random.default_rng(0)
    factors = [sample_factors(rng, v) for v in variants]
    recorded = record(factors, size)
    n_polys = sum(len(r.polys) + len(p.polys) for r, p in recorded) / n

    def gen(workers: int) -> None:
        cfg = SynthAircraftConfig(out=tmp / f"gen{workers}", n_train=n, n_val=0, n_ood=0, size=size, workers=workers,
                                  force=True)
        generate_synth_aircraft(cfg)

    def render_1proc() -> None:
        r = np.random.default_rng(1)
        for s in range(0, n, CHUNK):
            render_chunk(r, [sample_factors(r, v) for v in variants[s:s + CHUNK]], size)

    images = np.zeros((n, size, size, 3), np.uint8)
    parts = np.zeros((n, size, size), np.uint8)

    def save() -> None:
        for name, arr in (("images.npy", images), ("parts.npy", parts)):
            with open(tmp / name, "wb") as fh:
                np.save(fh, arr)
                fh.flush()
                os.fsync(fh.fileno())

    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    jobs = {f"generate, {args.workers} workers": lambda: gen(args.workers), "generate, 1 worker": lambda: gen(1),
            "render 1 proc (no writes)": render_1proc, "PIL only (same polygons)": lambda: pil_only(recorded, size),
            "np.save same bytes": save}
    gen(args.workers)  # warm up (page cache, imports in workers)
    for _ in range(args.repeats):
        for name, job in jobs.items():
            w, c = timed(job)
            wall[name], cpu[name] = min(wall.get(name, float("inf")), w), min(cpu.get(name, float("inf")), c)
    shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"synth-aircraft, {n} images of {size} px, {n_polys:.1f} polygons per image (RGB + part map), "
          f"best of {args.repeats}, {os.cpu_count()} CPUs, load average {load:.1f}")
    ref_w, ref_c = wall["PIL only (same polygons)"], cpu["PIL only (same polygons)"]
    print(f"  {'':34s} {'wall img/s':>10s} {'CPU ms/img':>10s} {'CPU vs PIL-only':>16s} {'2-core img/s from CPU':>22s}")
    for name in jobs:
        ms = cpu[name] / n * 1e3
        print(f"  {name:34s} {n / wall[name]:10.0f} {ms:10.3f} {cpu[name] / ref_c:15.2f}x {2000 / ms:22.0f}")
    g = f"generate, {args.workers} workers"
    print(f"  generate ({args.workers} workers) / np.save same bytes: {wall[g] / wall['np.save same bytes']:.1f} x the wall time")
    print(f"  wall: generate ({args.workers} workers) / PIL only: {wall[g] / ref_w:.2f}; "
          f"speed-up {args.workers} workers vs 1: {wall['generate, 1 worker'] / wall[g]:.2f}")


if __name__ == "__main__":
    main()
