"""``visae data synth-aircraft``: flags reach the config, refusals are one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import visae.cli  # noqa: F401  (registers every command)
from visae.cli import main
from visae.cli.app import app

runner = CliRunner()


def test_generates_with_the_given_flags(tmp_path: Path):
    out = tmp_path / "ds"
    args = ["data", "synth-aircraft", "--out", str(out), "--n-train", "30", "--n-val", "4", "--n-ood", "3",
            "--size", "32", "--seed", "7", "--workers", "1"]
    result = runner.invoke(app, args, env={"VISAE_QUIET": "1"})
    assert result.exit_code == 0, result.output
    assert "wrote 37 images" in result.output
    info = json.loads((out / "info.json").read_text())
    assert info["seed"] == 7 and info["size"] == 32 and info["splits"] == {"train": 30, "val": 4, "ood": 3}
    assert np.load(out / "ood" / "images.npy").shape == (3, 32, 32, 3)


def test_the_same_dataset_is_reused_and_another_refused(tmp_path: Path, capsys, monkeypatch):
    """Rerunning the command (a notebook cell run twice) reuses the dataset, as extract and train reuse theirs."""
    monkeypatch.setenv("VISAE_QUIET", "1")
    out = tmp_path / "ds"
    args = ["data", "synth-aircraft", "--out", str(out), "--n-train", "22", "--n-val", "0", "--n-ood", "0", "--size", "32",
            "--workers", "1"]  # fmt: skip
    def run(argv: list[str]) -> int:
        with pytest.raises(SystemExit) as done:
            main(argv)
        return done.value.code

    assert run(args) == 0
    stamp = (out / "train" / "images.npy").stat().st_mtime_ns
    assert run(args) == 0
    assert (out / "train" / "images.npy").stat().st_mtime_ns == stamp, "reused, not regenerated"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*args, "--seed", "3"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "generated with other settings (seed)" in err and "--force" in err


def test_existing_output_is_refused_without_force(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["data", "synth-aircraft", "--out", str(out), "--n-train", "30", "--n-val", "0", "--n-ood", "0"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0
    assert err.startswith("error: ") and "already holds other files" in err and "--force" in err
    assert (out / "notes.txt").read_text() == "mine"


def test_bad_size_is_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "synth-aircraft", "--out", str(tmp_path / "x"), "--size", "8"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "'size'" in err
    assert not (tmp_path / "x").exists()


def test_help_teaches_the_command():
    result = runner.invoke(app, ["data", "synth-aircraft", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("part map", "--n-ood", "--seed", "byte-identical", "ood"):
        assert text in result.output
