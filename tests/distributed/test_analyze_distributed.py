"""``torchrun --nproc-per-node 2 -m visae analyze``: the ranks scan halves of the store, rank 0 merges and writes,
and the feature DB equals the one a single process writes, table by table (floats within 1e-5: the sums are the
same numbers added in another order; ints, ids and ranks exact), except ``meta.db_id`` and the run's path.

Store: 66 synthetic aircraft at 32 px through a tiny random-init ConvNeXt (8 x 8 tokens of d=16 per image), a TopK
SAE of 32 latents trained on it in-process; analysed with near-duplicate collapsing and both baselines.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dist_helpers import launch, tiny_store

TOL = 1e-5
FLAGS = ["--top", "4", "--spare", "4", "--batch-images", "16", "--device", "cpu", "--no-text-labels"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(reference run analysed in-process, an untouched copy of the run before analysis)."""
    import visae

    root = tmp_path_factory.mktemp("analyze_dp")
    _, _, store = tiny_store(root)
    run = root / "run"
    visae.train(store=str(store), out=str(run), arch="topk", k=4, d_sae=32, batch_size=64,
                training_tokens=64 * 40, holdout=0, device="cpu")  # fmt: skip
    copy = root / "copy"
    shutil.copytree(run, copy)
    ref = launch(["-m", "visae", "analyze", "--run", run, *FLAGS], quiet=False)
    assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-4000:]
    return run, copy


def _rows(db: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    con = sqlite3.connect(db)
    try:
        out = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            info = con.execute(f"PRAGMA table_info({name})").fetchall()
            cols = [c[1] for c in info]
            pk = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5] > 0] or cols
            out[name] = (cols, con.execute(f"SELECT * FROM {name} ORDER BY {', '.join(pk)}").fetchall())
        return out
    finally:
        con.close()


def _same(a: Any, b: Any, where: str, blob_dtype: str | None = None) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=TOL, rel=TOL), where
    elif isinstance(a, bytes):
        x, y = np.frombuffer(a, dtype=blob_dtype), np.frombuffer(b, dtype=blob_dtype)
        if blob_dtype == "<f2":  # float16 maps: one float16 step where the float32 values differ in the last bits
            np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), rtol=1e-3, atol=TOL, err_msg=where)
        else:
            assert np.array_equal(x, y), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_two_ranks_write_the_single_process_db(runs):
    from visae.analysis.db import DB_NAME

    run, copy = runs
    # "--": torchrun's own parser would take --run for an ambiguous abbreviation of its --run-path
    p = launch(["-m", "visae", "--", "analyze", "--run", copy, "--force", *FLAGS], ranks=2, quiet=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert p.stdout.count("wrote ") == 1, p.stdout  # rank 0 reports, rank 1 is silent
    assert not (copy / ".ranks").exists()

    ref, got = _rows(run / DB_NAME), _rows(copy / DB_NAME)
    assert ref.keys() == got.keys()
    for table, (cols, rows) in ref.items():
        assert got[table][0] == cols, table
        other = got[table][1]
        assert len(other) == len(rows), f"{table}: {len(other)} rows, one process wrote {len(rows)}"
        if table == "meta":
            a = {k: json.loads(v) for k, v in rows if k not in ("db_id", "run")}
            b = {k: json.loads(v) for k, v in other if k not in ("db_id", "run")}
            _same(a, b, "meta")
            continue
        blob = {"top_examples": "<f2", "histograms": "<i8"}.get(table)
        for i, (r, o) in enumerate(zip(rows, other)):
            for c, x, y in zip(cols, r, o):
                _same(x, y, f"{table} row {i} {c}", blob)
    assert len(ref["top_examples"][1]) > 0 and len(ref["top_patches"][1]) > 0 and len(ref["channels"][1]) > 0
