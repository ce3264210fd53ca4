"""Kill -9 each stage at its worst moment, then rerun the same command: the result is identical to an
uninterrupted run's.

Each stage runs as a real subprocess (``kill_child.py``) that SIGKILLs itself just before the
rename that ends one of its atomic writes (the new file complete under its temporary name, the
old one still in place). extract and train are then resumed with ``--resume``; analyze and report
have no resume and start over, so a kill must leave the previous artifact (or none) untouched.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("analysis", "extraction")]
from analysis_fixtures import make_dataset, make_run, make_store  # noqa: E402
from extract_fakes import FakeBackbone, make_folder  # noqa: E402

from visae.cli import main  # noqa: E402

CHILD = Path(__file__).resolve().parent / "kill_child.py"


def visae(*argv: str) -> None:
    """`visae ARGV` in this process; it must succeed."""
    try:
        main(list(argv))
    except SystemExit as e:
        assert not e.code, f"visae {' '.join(argv)} exited {e.code}"


def killed(name: str, nth: int, *argv: str) -> None:
    """`visae ARGV` in a subprocess that SIGKILLs itself just before the ``nth`` rename onto ``name``."""
    env = {**os.environ, "VISAE_QUIET": "1"}
    proc = subprocess.run([sys.executable, str(CHILD), name, str(nth), "--", *argv], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, f"not killed (exit {proc.returncode}): {proc.stderr[-2000:]}"


def files(root: Path, skip: tuple[str, ...] = ("visae.json", ".visae.lock")) -> dict[str, bytes]:
    """Every file under ``root`` (minus the marker, which holds a timestamp, and the lock file)."""
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file() and f.name not in skip}  # fmt: skip


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    monkeypatch.setattr("visae.extraction.run.load_backbone", lambda cfg: FakeBackbone())


# ---------------------------------------------------------------- extract


def test_extract_killed_before_a_shard_commit_resumes_byte_identical(tmp_path):
    folder = make_folder(tmp_path / "imgs", n_per_class=6)
    args = ["extract", "--model", "fake:tiny", "--layer", "conv1", "--data", f"folder:{folder}",
            "--batch-size", "3", "--shard-tokens", "100"]  # fmt: skip
    visae(*args, "--out", str(tmp_path / "whole"))
    out = tmp_path / "cut"
    killed("metadata.json", 4, *args, "--out", str(out))  # shard 2's files are written, its commit is not
    meta = json.loads((out / "metadata.json").read_text())
    assert not meta["complete"] and len(meta["shards"]) == 2 and (out / "shard_000002.npy").is_file()
    visae(*args, "--out", str(out), "--resume")
    assert files(out) == files(tmp_path / "whole")  # shards, index, image tables, statistics, metadata


# ---------------------------------------------------------------- train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[str]]:
    """(store, the train command without --out) and one uninterrupted run of it, in store/../whole."""
    tmp = tmp_path_factory.mktemp("train")
    dataset, labels = make_dataset(tmp, 12)
    store = make_store(tmp / "store", dataset, labels)
    args = ["train", "--store", str(store), "--arch", "topk", "--k", "2", "--expansion", "2", "--batch-size", "16",
            "--training-tokens", "160", "--checkpoint-every", "32", "--log-every", "2"]  # fmt: skip
    os.environ["VISAE_QUIET"] = "1"
    visae(*args, "--out", str(tmp / "whole"))
    return tmp / "whole", args


def comparable(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]  # fmt: skip


@pytest.mark.parametrize("moment", [("state.pt", 3), ("cfg.json", 1)], ids=["mid-checkpoint", "mid-final-save"])
def test_train_killed_then_resumed_gives_the_same_weights(trained, tmp_path, moment):
    whole, args = trained
    out = tmp_path / "run"
    killed(*moment, *args, "--out", str(out))  # before checkpoint 3 lands (steps 6 of 10) / the SAE's cfg.json does
    assert not json.loads((out / "visae.json").read_text())["complete"]
    visae(*args, "--out", str(out), "--resume")
    (name,) = [p.name for p in (whole / "saes").iterdir()]
    want, got = (load_file(run / "saes" / name / "sae_weights.safetensors") for run in (whole, out))
    assert want.keys() == got.keys() and all(want[k].equal(got[k]) for k in want), "bit-identical weights"
    assert comparable(out) == comparable(whole)  # every metric line once, the same numbers
    assert files(out / "saes") == files(whole / "saes")  # weights, cfg.json (with the last batch's figures), sparsity
    assert (out / "summary.json").read_bytes() == (whole / "summary.json").read_bytes()
    assert not list(out.rglob("*.tmp")), "the temporary file the kill left was removed"


# ---------------------------------------------------------------- analyze, report


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("analyse")
    dataset, labels = make_dataset(tmp, 12)
    run = make_run(tmp / "run", make_store(tmp / "store", dataset, labels))
    os.environ["VISAE_QUIET"] = "1"
    visae("analyze", "--run", str(run), *ANALYZE)
    return run


ANALYZE = ("--top", "4", "--batch-images", "3")


def rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, minus ``meta.db_id`` (a fresh random id per write, which keys caches)."""
    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()
    out["meta"] = [r for r in out["meta"] if r[0] != "db_id"]
    return out


def test_analyze_killed_keeps_the_previous_db_or_none_and_reruns_to_the_same_rows(analysed):
    db = analysed / "features.sqlite"
    before, want = db.read_bytes(), rows(db)
    killed("features.sqlite", 1, "analyze", "--run", str(analysed), *ANALYZE, "--force")  # the new DB is complete
    assert db.read_bytes() == before, "the previous feature DB is untouched"
    visae("analyze", "--run", str(analysed), *ANALYZE, "--force")
    assert rows(db) == want
    db.unlink()
    killed("features.sqlite", 1, "analyze", "--run", str(analysed), *ANALYZE)
    assert not db.exists(), "no half-written DB under the real name"
    visae("analyze", "--run", str(analysed), *ANALYZE)  # no --force needed: nothing was left behind
    assert rows(db) == want and not list(analysed.glob("*.tmp"))


def test_report_killed_keeps_the_previous_report_or_none_and_reruns_to_the_same_html(analysed):
    html = analysed / "report.html"
    visae("report", "--run", str(analysed), "--images", "2")
    want = html.read_bytes()
    killed("report.html", 1, "report", "--run", str(analysed), "--images", "2")
    assert html.read_bytes() == want, "the previous report is untouched"
    html.unlink()
    killed("report.html", 1, "report", "--run", str(analysed), "--images", "2")
    assert not html.exists()
    visae("report", "--run", str(analysed), "--images", "2")
    assert html.read_bytes() == want  # no timestamps in a report: byte-identical
    assert not list(analysed.glob("*.tmp"))
