"""Data-parallel ``visae train`` under torchrun (gloo, CPU): 2 ranks x B/2 equals 1 process x B, only rank 0
writes, checkpoints resume across world sizes, and a killed rank stops the other with visae's one-line error.

Store: 66 synthetic aircraft at 32 px through a tiny random-init ConvNeXt (8 x 8 tokens of d=16 per image).
Kills are simulated deterministically: a wrapper (STOP) makes a rank exit hard (``os._exit``) as it is about
to take a given step, i.e. right after rank 0 wrote the checkpoint of that step.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from dist_helpers import free_port, job_env, launch, tiny_store
from safetensors.torch import load_file

TOTAL_STEPS, STOP_AT = 40, 20
ARGS = ["--k", "4", "--d-sae", "32", "--batch-size", "64", "--training-tokens", str(64 * TOTAL_STEPS),
        "--holdout", "0.1", "--log-every", "5", "--checkpoint-every", str(64 * 10), "--device", "cpu", "--seed", "0"]  # fmt: skip
TOL = 1e-4
"""Max |w_2ranks - w_1process| over the saved SAE's tensors after 40 steps. The two runs see the same tokens
(each rank takes its half of the same global batch) and take the same steps; only the fp32 summation order
differs (gradient of two half-batch means averaged vs one mean; the all-reduce). Measured on torch 2.x CPU:
7.2e-7 (topk), 9.5e-7 (batchtopk), 8.3e-7 / 9.5e-7 (resumed 2 -> 1 / 1 -> 2 ranks); the bound leaves 100x room."""

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


def env(**extra: str) -> dict[str, str]:
    return job_env(**extra)


def torchrun(n: int, args: list[str], script: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    """``visae train ARGS`` (or ``SCRIPT train ARGS``) on ``n`` torchrun ranks."""
    return launch([*([script] if script else ["-m", "visae"]), "train", *args], ranks=n, **extra)


def single(args: list[str], script: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    """The same in one process."""
    return torchrun(0, args, script, **extra)


def ok(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("dp"))[2]


@pytest.fixture(scope="module")
def stop_script(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("stop") / "stop.py"
    f.write_text(STOP)
    return f


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    """One process, global batch 64 (per architecture, made once): the run the data-parallel ones must reproduce."""
    runs: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in runs:
            runs[arch] = tmp_path_factory.mktemp("ref") / arch
            ok(single(["--store", str(store), "--out", str(runs[arch]), "--arch", arch, *ARGS]))
        return runs[arch]

    return get


def weights(run: Path) -> dict[str, torch.Tensor]:
    (folder,) = sorted((run / "saes").iterdir())
    return load_file(str(folder / "sae_weights.safetensors"))


def max_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def metric_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])  # batchtopk: the k * B selection is over the global batch
def test_two_ranks_match_one_process_and_only_rank_0_writes(store, reference, tmp_path, arch):
    out, reference = tmp_path / "dp", reference(arch)
    p = torchrun(2, ["--store", str(store), "--out", str(out), "--arch", arch, *ARGS])
    ok(p)
    diff = max_diff(reference, out)
    print(f"{arch}: max |w_2ranks - w_1process| after {TOTAL_STEPS} steps: {diff:.3g}")
    assert diff <= TOL
    # (3) only rank 0 wrote: the same files as the single-process run, no line twice, the figures of the global batch
    assert files(out) == files(reference)
    lines = metric_lines(out)
    keys = [(r["step"], r["sae"], r["split"]) for r in lines]
    assert len(keys) == len(set(keys)) and keys == [(r["step"], r["sae"], r["split"]) for r in metric_lines(reference)]
    for a, b in zip(lines, metric_lines(reference)):
        for k in ("loss", "nmse", "l0", "dead_pct", "mse"):
            if k in b:
                assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-5), (k, a, b)


def test_batch_size_not_divisible_by_the_world_is_refused(store, tmp_path):
    args = [a if a != "64" else "63" for a in ARGS]
    p = torchrun(2, ["--store", str(store), "--out", str(tmp_path / "odd"), "--arch", "topk", *args])
    assert p.returncode != 0
    assert "--batch-size 63 does not split over 2 ranks" in p.stderr
    assert not (tmp_path / "odd").exists()


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_world_size(store, reference, stop_script, tmp_path, first, then):
    out, base = tmp_path / "run", ["--store", str(store), "--out", str(tmp_path / "run"), "--arch", "topk", *ARGS]
    run = (lambda n, args, **kw: torchrun(n, args, **kw) if n > 1 else single(args, **kw))
    p = run(first, base, script=stop_script, STOP_AT=str(STOP_AT))
    assert p.returncode != 0
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == STOP_AT and state["tokens"] == STOP_AT * 64  # global terms
    assert not (out / "saes").exists()
    ok(run(then, [*base, "--resume"]))
    diff = max_diff(reference("topk"), out)
    print(f"{first} -> {then} ranks: max |w - w_1process| {diff:.3g}")
    assert diff <= TOL
    steps = [r["step"] for r in metric_lines(out) if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == TOTAL_STEPS


def test_a_killed_rank_stops_the_other_with_one_line(store, stop_script, tmp_path):
    port, out = str(free_port()), tmp_path / "run"
    long = [a if a != str(64 * TOTAL_STEPS) else str(64 * 100_000) for a in ARGS]
    procs = []
    t0 = time.monotonic()
    for rank in (0, 1):  # the ranks as torchrun starts them, without its agent (which would SIGTERM the survivor)
        e = env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                STOP_AT="30", STOP_RANK="1")  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(stop_script), "train", "--store", str(store), "--out", str(out),
                                       "--arch", "topk", *long], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    try:
        _, err1 = procs[1].communicate(timeout=90)
        assert procs[1].returncode == 9, err1
        _, err0 = procs[0].communicate(timeout=2 * 30 + 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    took = time.monotonic() - t0
    assert procs[0].returncode == 2, err0
    last = err0.strip().splitlines()[-1]
    assert "another rank stopped answering" in last and "train: step" in last, err0
    assert took < 2 * 30 + 30
