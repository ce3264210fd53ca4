"""Benchmark ``visae eval`` on a finished demo (``visae demo`` first): the whole suite against the 5 min target.

Runs ``visae eval --run runs/demo/sae --store runs/demo/store-val`` (every suite but stability, which needs a
second run; with ``--compare`` a second seed trained here too) in a fresh process on a copy of the run, and
prints the time of each suite from RUN/eval/*.json and the total against the 300 s target.

    python bench/bench_eval.py [--demo runs/demo] [--max-images 1000] [--compare]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=Path("runs/demo"))
    ap.add_argument("--max-images", type=int, default=1000)
    ap.add_argument("--compare", action="store_true", help="also train a second seed and run the stability suite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    run = tmp / "sae"
    shutil.copytree(args.demo / "sae", run, ignore=shutil.ignore_patterns("eval", "steer", "heatmaps", "checkpoint"))
    cmd = [sys.executable, "-m", "visae", "eval", "--run", str(run), "--store", str(args.demo / "store-val"),
           "--max-images", str(args.max_images), "--device", "cpu"]  # fmt: skip
    suites = ["core", "fidelity", "probe", "concepts", "ood", "ontology"]
    if args.compare:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "visae", "train", "--store", str(args.demo / "store"), "--out", str(tmp / "seed1"),
                        "--arch", "topk", "--k", "8", "--expansion", "8", "--training-tokens", "6000000", "--batch-size", "4096",
                        "--seed", "1", "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"second seed trained in {time.perf_counter() - t:.0f} s (not counted)")
        cmd += ["--compare", str(tmp / "seed1")]
        suites.append("stability")
    for s in suites:
        cmd += ["--suite", s]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - t
    for s in suites:
        res = json.loads((run / "eval" / f"{s}.json").read_text())
        print(f"  {s:10} {res.get('seconds', float('nan')):6.1f} s" + (f"  (skipped: {res['skipped']})" if isinstance(res.get("skipped"), str) else ""))
    print(f"visae eval, {len(suites)} suites, fresh process, loading included: {total:.1f} s; target 300 s: {total / 300:.2f} of it")


if __name__ == "__main__":
    main()
