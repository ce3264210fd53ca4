"""`visae demo --quick`: the whole chain from pixels to report, as a user runs it."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

import visae.cli  # noqa: F401  (registers the commands)
from visae.artifact import read_marker
from visae.cli import main
from visae.cli.app import app


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reuses_finished_steps(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    kinds = {name: (read_marker(out / name) or {}).get("kind") for name in ("data", "classifier", "store", "sae")}
    assert kinds == {"data": "synth-aircraft", "classifier": "classifier", "store": "store", "sae": "sae-run"}
    for needle in ("classifier val top-1", "SAE held-out NMSE", "SAE held-out L0", "SAE held-out dead %", "part-pure latents"):
        assert needle in res.output
    clf = json.loads((out / "classifier" / "visae_classifier.json").read_text())
    assert 0.0 <= clf["val_top1"] <= 1.0
    with sqlite3.connect(out / "sae" / "features.sqlite") as db:
        assert db.execute("select count(*) from latents").fetchone()[0] > 0
    html = (out / "report.html").read_text()  # the summary names it; rich may wrap the path
    assert "data:image/png;base64," in html and "http://" not in html.split("<body", 1)[1][:2000]

    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "SAE held-out NMSE" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == written  # every step reused


def test_demo_force_never_deletes_foreign_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--out", str(tmp_path), "--force"])
    assert e.value.code == 2
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
