"""Shared by the torchrun tests: a free loopback port, a clean job environment, a launcher, a tiny store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

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
        head += ["-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-port", str(free_port())]
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
