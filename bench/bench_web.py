"""Benchmark ``visae serve`` under load with ``hey`` (apt install hey): p50/p95/p99 and throughput per endpoint.

Targets (issue 13): the feature API answers in <= 100 ms at p95 and a steering request on the demo in <= 500 ms
at p95, under 8 concurrent loopback clients, for a 12k-latent SAE. Prepare the run once:

    visae train --store runs/demo/store --out runs/bench-12k --arch topk --k 16 --d-sae 12288 \\
        --training-tokens 1000000 --batch-size 4096
    visae analyze --run runs/bench-12k --top 16 --no-text-labels

then ``python bench/bench_web.py [--run runs/bench-12k] [--requests 400] [--concurrency 8]``. The server runs
in a subprocess on a free port; each endpoint gets a warm-up, then ``hey -n N -c C``.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, seconds: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < seconds:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer {url} in {seconds} s")


def hey(url: str, n: int, c: int, body: Path | None = None) -> dict[str, float]:
    cmd = ["hey", "-n", str(n), "-c", str(c)]
    if body is not None:
        cmd += ["-m", "POST", "-T", "application/json", "-D", str(body)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    pct = {int(m.group(1)): float(m.group(2)) * 1000 for m in re.finditer(r"(\d+)%+ in ([\d.]+) secs", out)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    return {"p50": pct.get(50), "p95": pct.get(95), "p99": pct.get(99), "rps": rps, "codes": codes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/bench-12k"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "visae", "serve", "--run", str(args.run), "--port", str(port), "--device", "cpu"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait(f"{base}/api/runs")
        run = json.loads(urllib.request.urlopen(f"{base}/api/runs").read())[0]
        feats = json.loads(urllib.request.urlopen(f"{base}/api/runs/0/features?sort=class_selectivity&order=desc&limit=1").read())
        latent = feats["items"][0]["id"]
        page = json.loads(urllib.request.urlopen(f"{base}/api/runs/0/features/{latent}").read())
        image = next(iter(page["top"].values()))[0]["image_index"]
        body = Path(tempfile.mkdtemp()) / "steer.json"
        body.write_text(json.dumps({"image_index": image, "edits": [{"latent": latent, "scale": -2.0, "where": "all"}]}))
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/runs/0/steer", data=body.read_bytes(),
                                                      headers={"Content-Type": "application/json"})).read()  # warm-up (probe)
        cases = {
            "GET /features (search + sort, 50 rows)": (f"{base}/api/runs/0/features?q=a&sort=freq&order=desc&limit=50", None, 100),
            "GET /features (band filter, page 20)": (f"{base}/api/runs/0/features?band=rare&offset=1000&limit=50", None, 100),
            "GET /features/{id} (feature page)": (f"{base}/api/runs/0/features/{latent}", None, 100),
            "GET heatmap PNG": (f"{base}/api/runs/0/features/{latent}/heatmap/max/0.png", None, 100),
            "POST /steer (one edit)": (f"{base}/api/runs/0/steer", body, 500),
        }
        print(f"visae serve on {run['name']} ({run['n_latents']} latents, {run['n_images']} images), {args.concurrency} concurrent "
              f"clients, {args.requests} requests per endpoint, hey over loopback")  # fmt: skip
        print(f"{'endpoint':42} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}  target p95  ratio  codes")
        for name, (url, data, target) in cases.items():
            hey(url, max(args.concurrency * 2, 16), args.concurrency, data)  # warm-up
            r = hey(url, args.requests, args.concurrency, data)
            print(f"{name:42} {r['p50']:8.1f} {r['p95']:8.1f} {r['p99']:8.1f} {r['rps']:8.1f}  {target:>7} ms  {r['p95'] / target:5.2f}  {r['codes']}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
