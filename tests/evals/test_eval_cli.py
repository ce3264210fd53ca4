"""`visae eval` and `visae eval frontier` as a user types them: tables, JSON, skipped suites, refusals."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from cli_helpers import run  # noqa: E402


def test_eval_writes_each_suite_and_skips_what_lacks_its_input(eval_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(eval_run["run"], copy)
    res = run("eval", "--run", copy, "--store", eval_run["heldout"], "--suite", "core", "--suite", "stability",
              "--suite", "ontology", "--device", "cpu")  # fmt: skip
    assert res.code == 0, res.err
    assert "[core]" in res.out and "nmse" in res.out and "random-init SAE" in res.out
    assert "[stability] skipped: no second SAE to compare" in res.out or "[stability] skipped" in res.out
    folder = copy / "eval"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["suites"] == {"core": "done", "ontology": "done", "stability": "skipped"}
    assert summary["images"] == 132 and "held-out store" in summary["heldout"]
    core = json.loads((folder / "core.json").read_text())
    assert core["sae"]["nmse"] < core["random_sae"]["nmse"]
    assert "skipped" in json.loads((folder / "stability.json").read_text())


def test_every_suite_runs_by_default_and_those_without_input_say_why(eval_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(eval_run["run"], copy)
    res = run("eval", "--run", copy, "--store", eval_run["heldout"], "--max-images", "60", "--device", "cpu")
    assert res.code == 0, res.err
    summary = json.loads((copy / "eval" / "summary.json").read_text())
    assert list(summary["suites"]) == ["core", "fidelity", "probe", "concepts", "ood", "ontology", "stability"]
    assert summary["suites"]["ood"] == "skipped" and summary["suites"]["stability"] == "skipped"  # no ood split, no --compare
    assert summary["suites"]["core"] == summary["suites"]["concepts"] == "done"
    assert "[ood] skipped: " in res.out and "ood_split" in res.out


def test_without_a_held_out_store_a_run_that_kept_nothing_out_is_told_how_to_make_one(eval_run):
    res = run("eval", "--run", eval_run["run"], "--suite", "core", "--device", "cpu")
    assert res.code != 0 and len(res.err_lines) == 1
    assert "kept no images" in res.err and "visae extract --model" in res.err and "--split val" in res.err


def test_runs_of_different_stores_are_not_compared_without_allow_mismatch(eval_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(eval_run["run"], other)
    for cfg_path in other.rglob("cfg.json"):
        cfg = json.loads(cfg_path.read_text())
        cfg["visae"]["store"] = str(tmp_path / "elsewhere")
        cfg_path.write_text(json.dumps(cfg))
    res = run("eval", "--run", eval_run["run"], "--run", other, "--store", eval_run["heldout"], "--suite", "core", "--device", "cpu")
    assert res.code != 0 and "different stores" in res.err and "--allow-mismatch" in res.err
    assert not (other / "eval").exists()


def test_frontier_lists_every_sae_and_marks_the_pareto_front(eval_run, tmp_path):
    import visae

    runs = []
    for k, name in ((2, "k2"), (8, "k8")):
        runs.append(visae.train(store=str(eval_run["store"]), out=str(tmp_path / name), arch="topk", k=k, d_sae=64,
                                batch_size=256, training_tokens=20_000, holdout=0.1, device="cpu").path)  # fmt: skip
    res = run("eval", "frontier", *runs, "--out", tmp_path / "front.png")
    assert res.code == 0, res.err
    lines = [line for line in res.out.splitlines() if line.strip().startswith(("k2", "k8"))]
    assert len(lines) == 2 and all("topk" in line for line in lines)
    assert "yes" in res.out and (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    res = run("eval", "frontier", eval_run["run"])  # trained with holdout 0: no held-out numbers
    assert res.code != 0 and "no held-out evaluation" in res.err
