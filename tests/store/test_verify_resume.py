"""A crashed writer loses only its open shard; verify finds damage; resuming is bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from store_helpers import image_rows, write_store
from typer.testing import CliRunner

from visae.cli import app
from visae.store import Store, StoreWriter, verify


def acts(n=12, t=5, d=4):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(t, d, generator=g) for _ in range(n)]


def files(path):
    return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.name != "visae.json"}


def test_writer_crash_then_resume_is_bit_identical(tmp_path):
    a = acts()
    write_store(tmp_path / "full", a, shard_tokens=8, dtype="bf16")
    write_store(tmp_path / "crash", a, shard_tokens=8, dtype="bf16", stop_after=7)  # 35 tokens: 4 shards + 3 buffered
    (tmp_path / "crash" / ".shard_000004.npy.x.tmp").write_bytes(b"half a shard")  # a write cut short
    report = verify(tmp_path / "crash")
    assert {p.kind for p in report.problems} == {"partial", "incomplete"} and not report.damaged

    w = StoreWriter.reopen(tmp_path / "crash")
    assert w.meta.n_tokens == 32 and w.resume_point() == 6  # image 6 (tokens 30-34) is cut by the shard end
    w.resume_from(6)
    for i in range(6, 12):
        w.add(a[i], image_rows(i, 5, i % 3), {i: f"img{i}"})
    w.close()
    assert verify(tmp_path / "crash").ok
    assert files(tmp_path / "crash") == files(tmp_path / "full")


def test_verify_detects_corruption_missing_and_bad_counts(small_store):
    path = small_store[0]
    assert verify(path).ok
    shard = path / "shard_000001.npy"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    (path / "index_000002.npy").unlink()
    report = verify(path)
    kinds = {p.where: p.kind for p in report.problems}
    assert kinds == {"shard_000001.npy": "corrupt", "index_000002.npy": "missing"}
    assert report.damaged and "--force" in report.hint()


def test_cli_verify_and_info(small_store):
    path = small_store[0]
    runner = CliRunner()
    r = runner.invoke(app, ["store", "verify", str(path)])
    assert r.exit_code == 0 and "ok:" in r.output
    r = runner.invoke(app, ["store", "info", str(path)])
    assert r.exit_code == 0 and "78 x 5 (fp32)" in r.output and "layer" in r.output
    (path / "images_000000.json").write_text("{}")
    r = runner.invoke(app, ["store", "verify", str(path)])
    assert r.exit_code == 1 and "corrupt" in r.output and "--force" in r.output


def test_cli_verify_incomplete_says_resume(tmp_path):
    write_store(tmp_path / "s", acts(), shard_tokens=8, stop_after=4)
    r = CliRunner().invoke(app, ["store", "verify", str(tmp_path / "s")])
    assert r.exit_code == 1 and "incomplete" in r.output and "--resume" in r.output


def test_xxh3_checksums_detect_a_flipped_bit(tmp_path):
    pytest.importorskip("xxhash")
    write_store(tmp_path / "s", acts(), shard_tokens=16, checksum="xxh3_128")
    assert verify(tmp_path / "s").ok
    shard = tmp_path / "s" / "shard_000000.npy"
    raw = bytearray(shard.read_bytes())
    raw[200] ^= 0x01
    shard.write_bytes(bytes(raw))
    assert [p.kind for p in verify(tmp_path / "s").problems] == ["corrupt"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    from visae.cli import main

    with pytest.raises(SystemExit) as e:
        main(["store", "info", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: store") and "visae extract" in err
