"""Shared by the torchrun tests: a free loopback port, a clean job environment, a launcher, a tiny store, and
for training runs: a rank-stopping wrapper and comparisons of runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env(quiet: bool = True, **extra: str) -> dict[str, str]:
    """This process's environment without a torchrun job's variables, a 30 s time-out, one thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    return env | {"VISAE_DIST_TIMEOUT": "30", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "VISAE_QUIET": "1" if quiet else "0"} | extra


def launch(what: list[str], ranks: int = 0, timeout: float = 120, quiet: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """``python WHAT`` (``-m visae CMD ...`` or a script), under ``torchrun --nproc-per-node RANKS`` when RANKS > 0."""
    head = [sys.executable]
    if ranks:
        head += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    return subprocess.run([*head, *map(str, what)], env=job_env(quiet, **extra), capture_output=True, text=True, timeout=timeout)


def tiny_store(root: Path, n_images: int = 66, d_sae_layer: str = "encoder.stages.1") -> tuple[Path, Path, Path]:
    """(data, model, store): synthetic aircraft at 32 px, a random-init ConvNeXt saved locally, its fp32 store."""
    import visae
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft

    data = root / "data"
    generate_synth_aircraft(SynthAircraftConfig(out=data, n_train=n_images, n_val=0, n_ood=0, size=32, seed=0, workers=1))
    torch.manual_seed(0)
    model = root / "convnext"
    ConvNextModel(ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32)).save_pretrained(model)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(model)
    store = visae.extract(model=f"hf:{model}", layer=d_sae_layer, data=f"synth-aircraft:{data}", split="train",
                          out=root / "acts", dtype="fp32", batch_size=32, device="cpu")  # fmt: skip
    return data, model, Path(store.path)


STOP = textwrap.dedent('''
    import os, sys
    from visae.sae import member
    stop, rank = int(os.environ["STOP_AT"]), os.environ.get("STOP_RANK")
    step = member.Member.step
    def stopping(self, x, i, measure):
        if i == stop and (rank is None or os.environ.get("RANK", "0") == rank):
            os._exit(9)
        return step(self, x, i, measure)
    member.Member.step = stopping
    from visae.cli import main
    sys.argv = ["visae", *sys.argv[1:]]
    main()
''')
"""``python STOP train ...``: visae, except that a rank (STOP_RANK, default every rank) exits hard (``os._exit(9)``) as
it is about to take step STOP_AT, i.e. right after rank 0 wrote the checkpoint of that step."""


def train_job(n: int, args: list[str], script: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    """``visae train ARGS`` (or ``SCRIPT train ARGS``) on ``n`` torchrun ranks, or in one process when n is 0 or 1."""
    return launch([*([script] if script else ["-m", "visae"]), "train", *args], ranks=n if n > 1 else 0, **extra)


def ok(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]


def sae_weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every saved SAE of a run: name -> its SAELens tensors."""
    return {f.name: load_file(str(f / "sae_weights.safetensors")) for f in sorted((run / "saes").iterdir())}


def max_diff(a: Path, b: Path) -> float:
    """The largest |difference| between the saved SAEs of two runs (the same SAEs, the same tensors)."""
    wa, wb = sae_weights(a), sae_weights(b)
    assert wa.keys() == wb.keys() and all(wa[n].keys() == wb[n].keys() for n in wa)
    return max(float((wa[n][k] - wb[n][k]).abs().max()) for n in wa for k in wa[n])


def metric_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


def kill_rank_1(stop_script: Path, args: list[str], stop_at: int, timeout: int) -> tuple[int, str, float]:
    """``visae train ARGS`` on 2 ranks started as torchrun starts them but without its agent (which would SIGTERM
    the survivor), rank 1 exiting hard at step ``stop_at``: (rank 0's exit code, its stderr, seconds until it ended)."""
    port, procs, t0 = str(free_port()), [], time.monotonic()
    for rank in (0, 1):
        e = job_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                    STOP_AT=str(stop_at), STOP_RANK="1", VISAE_DIST_TIMEOUT=str(timeout))  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(stop_script), "train", *args], env=e, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    try:
        _, err1 = procs[1].communicate(timeout=90)
        assert procs[1].returncode == 9, err1
        _, err0 = procs[0].communicate(timeout=2 * timeout + 90)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return procs[0].returncode, err0, time.monotonic() - t0
