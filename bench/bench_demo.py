"""The whole demo, timed: `visae demo` (<= 10 min target) and `visae demo --quick` (<= 2 min).

Also records the part-purity comparison the demo measures: latents whose top-16 patches
fall >= 80% on one ground-truth part, SAE vs the backbone's raw channels.

    .venv/bin/python bench/bench_demo.py [--quick-only] [--out /tmp/visae-bench-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from visae.reference_study import DemoConfig, demo


def run(out: Path, quick: bool) -> dict:
    if out.exists():
        shutil.rmtree(out)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    summary = demo(DemoConfig(out=out, quick=quick))
    total = time.perf_counter() - t0
    return {"quick": quick, "total_s": round(total, 1), "load_before": round(load0, 2),
            "load_after_1min": round(os.getloadavg()[0], 2), **summary}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/visae-bench-demo"))
    ap.add_argument("--quick-only", action="store_true")
    args = ap.parse_args()
    results = [run(args.out / "quick", True)]
    if not args.quick_only:
        results.append(run(args.out / "full", False))
    for r in results:
        print(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
