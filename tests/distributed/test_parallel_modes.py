"""``visae train --parallel latents|sweep`` under torchrun (gloo, CPU, 2 ranks) against one process.

- latents: each rank holds half of a TopK or BatchTopK SAE's latents (measured: RUN/summary.json's params_per_rank); the saved SAE
  equals the one-process run's within TOL, and so do the metric lines;
- sweep: a sweep of three SAEs (topk, batchtopk, relu) on two ranks trains each SAE on one rank, bit for bit the
  one-process weights;
- checkpoints hold whole SAEs: a sharded run resumes in one process and a one-process run resumes sharded;
- a split stream (--stream split): each data-parallel rank reads its own blocks of the store, none twice, and the
  SAE trains as well as on the global stream;
- a mode that cannot split the run is refused before anything is written; a killed rank in the middle of a sharded
  step stops the other with the one-line time-out error.

Store: 66 synthetic aircraft at 32 px through a tiny random-init ConvNeXt (8 x 8 tokens of d=16 per image).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from dist_helpers import files, kill_rank_1, max_diff, metric_lines, ok, tiny_store, train_job

TOTAL_STEPS, STOP_AT, D, S = 40, 20, 16, 32
ARGS = ["--d-sae", str(S), "--batch-size", "64", "--training-tokens", str(64 * TOTAL_STEPS), "--holdout", "0.1",
        "--log-every", "5", "--checkpoint-every", str(64 * 10), "--device", "cpu", "--seed", "0"]  # fmt: skip
TOPK = ["--arch", "topk", "--k", "4"]
SHARDABLE = {"topk": TOPK, "batchtopk": ["--arch", "batchtopk", "--k", "4"]}
TOL = 1e-4
"""Max |w_sharded - w_1process| after 40 steps. The selection, codes and loss are the unsharded ones; only fp32
summation order differs (two partial decodes summed, the clip norm from two partial sums). Measured: 7.2e-7, also
while latents are dead (AuxK over both ranks' dead latents); BatchTopK (its k*B selection over both slices): 9.5e-7."""
SWEEP = """
d_sae = 32
[[sae]]
arch = "topk"
k = 4
[[sae]]
arch = "batchtopk"
k = 4
[[sae]]
arch = "relu"
"""


READS = textwrap.dedent('''
    import os, sys
    from visae.store import reader, stream
    stream.DEFAULT_BLOCK_BYTES = 64 * 16 * 4  # blocks of 64 tokens of this tiny store (256 KiB ones hold it whole)
    read = reader.Store.read_rows_into
    log = open(os.environ["READS_LOG"] + "." + os.environ.get("RANK", "0"), "a")
    def logged(self, k, lo, out):
        log.write(f"{k} {lo} {len(out)}\\n")
        log.flush()
        return read(self, k, lo, out)
    reader.Store.read_rows_into = logged
    from visae.cli import main
    sys.argv = ["visae", *sys.argv[1:]]
    main()
''')
"""``python READS train ...``: visae with blocks of 64 tokens, logging each block the stream reads (per rank)."""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("modes"))[2]


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("sweep") / "sweep.toml"
    f.write_text(SWEEP)
    return f


@pytest.fixture(scope="module")
def reference(store, sweep_file, tmp_path_factory) -> dict[str, Path]:
    """One-process runs: a TopK SAE, a BatchTopK SAE, and the three-SAE sweep."""
    root = tmp_path_factory.mktemp("ref")
    for arch, args in SHARDABLE.items():
        ok(train_job(0, ["--store", str(store), "--out", str(root / arch), *args, *ARGS]))
    ok(train_job(0, ["--store", str(store), "--out", str(root / "sweep"), "--config", str(sweep_file), *ARGS]))
    return {**{arch: root / arch for arch in SHARDABLE}, "sweep": root / "sweep"}


def assert_same_run(out: Path, ref: Path) -> None:
    """Rank 0 alone wrote what one process writes: the same files and the same metric lines (global figures)."""
    assert files(out) == files(ref)
    lines, ref_lines = metric_lines(out), metric_lines(ref)
    assert [(r["step"], r["sae"], r["split"]) for r in lines] == [(r["step"], r["sae"], r["split"]) for r in ref_lines]
    for a, b in zip(lines, ref_lines):
        for k in ("loss", "nmse", "l0", "dead_pct", "dense_pct", "mse", "auxk"):
            if k in b:
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (k, a, b)


@pytest.mark.parametrize("arch", SHARDABLE)
def test_latent_sharding_matches_one_process_with_half_the_parameters_per_rank(store, reference, tmp_path, arch):
    out = tmp_path / "latents"
    ok(train_job(2, ["--store", str(store), "--out", str(out), *SHARDABLE[arch], *ARGS, "--parallel", "latents"]))
    diff = max_diff(reference[arch], out)
    print(f"latents, {arch}: max |w_2ranks - w_1process| after {TOTAL_STEPS} steps: {diff:.3g}")
    assert diff <= TOL
    assert_same_run(out, reference[arch])
    assert any(r["dead_pct"] > 0 for r in metric_lines(out) if r["split"] == "train")  # AuxK ran across the shards
    layout = json.loads((out / "summary.json").read_text())["parallel"]
    whole = S * (2 * D + 1) + D  # W_enc, W_dec, b_enc and b_dec of the whole SAE
    assert layout["mode"] == "latents" and layout["ranks"] == 2 and layout["params_whole_saes"] == whole
    assert layout["params_per_rank"] == [S // 2 * (2 * D + 1) + D] * 2  # half the latents each, b_dec on both


def test_a_sweep_places_its_saes_on_the_ranks(store, reference, sweep_file, tmp_path):
    out = tmp_path / "sweep"
    ok(train_job(2, ["--store", str(store), "--out", str(out), "--config", str(sweep_file), *ARGS, "--parallel", "sweep"]))
    diff = max_diff(reference["sweep"], out)
    print(f"sweep: max |w_2ranks - w_1process| over 3 SAEs: {diff:.3g}")
    assert diff <= TOL
    assert_same_run(out, reference["sweep"])
    layout = json.loads((out / "summary.json").read_text())["parallel"]
    one = S * (2 * D + 1) + D
    assert layout["params_per_rank"] == [2 * one, one]  # SAEs 0 and 2 on rank 0, SAE 1 on rank 1


@pytest.mark.parametrize("first, then", [(2, 0), (0, 2)])
def test_sharded_checkpoints_hold_whole_saes(store, reference, stop_script, tmp_path, first, then):
    out = tmp_path / "run"
    base = ["--store", str(store), "--out", str(out), *TOPK, *ARGS, "--parallel", "latents"]
    assert train_job(first, base, script=stop_script, STOP_AT=str(STOP_AT)).returncode != 0
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    (saved,) = state["members"].values()
    assert state["step"] == STOP_AT and saved["sae"]["W_dec"].shape == (S, D) and saved["count_S"].shape == (S,)
    assert saved["opt"]["state"][1]["exp_avg"].shape == (D, S)  # W_enc's Adam moments, whole
    ok(train_job(then, [*base, "--resume"]))
    diff = max_diff(reference["topk"], out)
    print(f"{first or 1} -> {then or 1} process(es), latents: max |w - w_1process| {diff:.3g}")
    assert diff <= TOL


def test_a_split_stream_reads_each_block_on_one_rank(store, tmp_path):
    script = tmp_path / "reads.py"
    script.write_text(READS)
    blocks = {}
    for stream in ("global", "split"):
        out, log = tmp_path / stream, tmp_path / f"{stream}.reads"
        ok(train_job(2, ["--store", str(store), "--out", str(out), *TOPK, *ARGS, "--stream", stream], script=script,
                     READS_LOG=str(log)))  # fmt: skip
        blocks[stream] = [[tuple(line.split()) for line in (tmp_path / f"{stream}.reads.{r}").read_text().splitlines()] for r in (0, 1)]
    same, split = blocks["global"], blocks["split"]
    assert sorted(same[0]) == sorted(same[1])  # the global stream: both ranks read every block
    assert len(set(split[0])) == len(split[0]) and len(set(split[1])) == len(split[1])  # one pass: no block twice
    assert not set(split[0]) & set(split[1])  # each block on one rank
    assert set(split[0]) | set(split[1]) == set(same[0])  # together: the blocks the global stream reads
    heldout = {s: [r for r in metric_lines(tmp_path / s) if r["split"] == "heldout"][-1]["nmse"] for s in blocks}
    print(f"held-out NMSE after {TOTAL_STEPS} steps: global stream {heldout['global']:.3f}, split {heldout['split']:.3f}")
    assert heldout["split"] < 1.25 * heldout["global"]  # other batches, as good a run


@pytest.mark.parametrize("mode, args, message", [
    ("sweep", TOPK, "--parallel sweep places 1 SAE(s) on 2 ranks: 1 would idle"),
    ("latents", ["--arch", "relu"], "--parallel latents shards topk and batchtopk SAEs, not 'relu'"),
    ("latents", [*TOPK, "--stream", "split"], "--stream split is for --parallel data"),
])  # fmt: skip
def test_a_mode_that_cannot_split_the_run_is_refused(store, tmp_path, mode, args, message):
    out = tmp_path / "refused"
    p = train_job(2, ["--store", str(store), "--out", str(out), *args, *ARGS, "--parallel", mode])
    assert p.returncode != 0 and message in p.stderr, p.stderr[-2000:]
    assert not out.exists()


def test_a_killed_rank_stops_a_sharded_step_with_one_line(store, stop_script, tmp_path):
    long = [a if a != str(64 * TOTAL_STEPS) else str(64 * 100_000) for a in ARGS]
    rc, err, took = kill_rank_1(stop_script, ["--store", str(store), "--out", str(tmp_path / "run"), *TOPK, *long,
                                              "--parallel", "latents"], stop_at=30, timeout=10)  # fmt: skip
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert "another rank stopped answering" in last and "sharded SAE" in last, err
    assert took < 2 * 10 + 90  # far below the 300 s default: it did not hang
