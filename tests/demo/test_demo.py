"""`visae demo --quick`: the whole chain from pixels to report, as a user runs it."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from typer.testing import CliRunner

import visae.cli  # noqa: F401  (registers the commands)
from visae.artifact import read_marker
from visae.cli import main
from visae.cli.app import app


ARTIFACTS = [
    "data/*/images.npy", "data/*/parts.npy", "data/*/manifest.jsonl", "data/info.json", "data/preview.png",
    "classifier/model.safetensors", "classifier/config.json", "classifier/preprocessor_config.json",
    "classifier/visae_classifier.json", "store/shard_*.npy", "store/index_*.npy", "store/stats_*.safetensors",
    "store/metadata.json", "sae/checkpoint/state.pt", "sae/saes/*/sae_weights.safetensors",
    "sae/saes/*/sparsity.safetensors", "sae/saes/*/cfg.json", "sae/features.sqlite", "sae/heatmaps/*/*.png",
    "sae/steer/summary.json", "sae/steer/suppression.json", "sae/steer/segmentation.json", "sae/steer/dose.png",
    "store-val/metadata.json", "sae/eval/summary.json", "sae/eval/core.json", "sae/eval/concepts.json", "sae/eval/ood.json",
    "report.html",
]
"""One glob per kind of file the demo writes: each must exist, with the usual mode."""


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reuses_finished_steps(tmp_path):
    out = tmp_path / "demo"
    umask = os.umask(0o022)
    try:
        res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    finally:
        os.umask(umask)
    assert res.exit_code == 0, res.output
    for kind in ARTIFACTS:
        assert list(out.glob(kind)), f"the demo wrote no {kind}"
    modes = {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in out.rglob("*")}
    wrong = {p: m for p, m in modes.items() if m != (oct(0o755) if (out / p).is_dir() else oct(0o644))}
    assert not wrong, f"under umask 022 every file is 0644 and every folder 0755: {wrong}"
    kinds = {name: (read_marker(out / name) or {}).get("kind") for name in ("data", "classifier", "store", "sae")}
    assert kinds == {"data": "synth-aircraft", "classifier": "classifier", "store": "store", "sae": "sae-run"}
    for needle in ("classifier val top-1", "SAE held-out NMSE", "SAE held-out L0", "SAE held-out dead %", "part-pure latents",
                   "suppression of", "input-space ablation", "segmentation (SAE-V)", "ground truth",
                   "eval: reconstruction", "eval: spliced fidelity", "eval: concept mAP", "eval: OOD, best SAE score"):
        assert needle in res.output, needle
    steer = json.loads((out / "sae" / "steer" / "summary.json").read_text())
    assert steer["split"] == "val" and steer["suppression"]["random"]["flip_rate"] is not None
    clf = json.loads((out / "classifier" / "visae_classifier.json").read_text())
    assert 0.0 <= clf["val_top1"] <= 1.0
    with sqlite3.connect(out / "sae" / "features.sqlite") as db:
        assert db.execute("select count(*) from latents").fetchone()[0] > 0
    html = (out / "report.html").read_text()  # the summary names it; rich may wrap the path
    assert "<h2>Causal tests</h2>" in html and "random direction" in html
    assert "<h2>Evaluation</h2>" in html and "Coverage@0.3" in html
    evaluation = json.loads((out / "sae" / "eval" / "summary.json").read_text())
    assert evaluation["suites"] == {"core": "done", "fidelity": "done", "probe": "done", "concepts": "done", "ood": "done",
                                    "ontology": "done"}  # fmt: skip
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


def test_demo_refuses_another_artifact_or_a_file_as_its_folder(tmp_path, capsys):
    from visae.artifact import write_marker

    store = tmp_path / "store"
    store.mkdir()
    write_marker(store, "store")
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    (tmp_path / "file").write_text("x")
    for out, says in ((store, "holds a visae store, not a demo"), (tmp_path / "file", "is a file, not a directory")):
        with pytest.raises(SystemExit) as e:
            main(["demo", "--quick", "--out", str(out)])
        assert e.value.code == 2 and says in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before, "nothing written into the store"
