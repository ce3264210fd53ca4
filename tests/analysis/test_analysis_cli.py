"""`visae analyze` / `visae report` from the command line: flags in, one-line errors out."""

from __future__ import annotations

import re
import shutil

from analysis_fixtures import make_dataset, make_store

from visae.cli import main


def cli(*args: str) -> int:
    """Run `visae ARGS` in-process; its exit status."""
    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_analyze_and_report_commands(planted, tmp_path, capsys):
    run, store, _ = planted
    assert cli("analyze", "--run", str(run), "--top", "4", "--batch-images", "3") == 0
    out = capsys.readouterr().out
    assert "6 latents over 12 images" in out
    for measure in ("part-pure units", "class-selective units", "border/position units"):  # each next to both baselines
        line = next(line for line in out.splitlines() if line.startswith(measure))
        assert re.search(r"SAE \d+\.\d% \(\d/6 latents\) vs raw channels \d+\.\d% \(\d+/12 signed channels\) "
                         r"vs random-init SAE \d+\.\d% \(\d/6 latents\)$", line), line
    assert (run / "features.sqlite").is_file()
    assert re.search(r"^labelled latents: .*unlabelled \(below every threshold, best guess kept apart\): \d+$", out, re.M)
    assert re.search(r"^near-duplicate images: \d+ pairs among 12 compared", out, re.M)
    assert cli("analyze", "--run", str(run), "--force", "--no-dedup", "--spare", "0") == 0
    assert "near-duplicate images: not collapsed (turned off)" in capsys.readouterr().out
    assert cli("analyze", "--run", str(run)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--force" in err and len(err.splitlines()) == 1
    assert cli("report", "--run", str(run), "--out", str(tmp_path / "r.html"), "--images", "2") == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "r.html").stat().st_size > 1000


def test_mismatched_store_is_one_line_error(planted, tmp_path, capsys):
    run, _, labels = planted
    other = make_store(tmp_path / "other", make_dataset(tmp_path, 4)[0], labels[:4], layer="blocks.7")
    assert cli("analyze", "--run", str(run), "--store", str(other)) == 2
    err = capsys.readouterr().err
    assert "layer 'blocks.3'" in err and "blocks.7" in err and "Traceback" not in err


def test_run_with_several_saes_is_analysed_one_folder_at_a_time(planted, capsys):
    run, _, _ = planted
    shutil.copytree(run / "saes" / "relu", run / "saes" / "relu2")
    assert cli("analyze", "--run", str(run)) == 2
    assert "several SAEs" in capsys.readouterr().err
    assert cli("analyze", "--run", str(run / "saes" / "relu2"), "--top", "2") == 0
    assert (run / "saes" / "relu2" / "features.sqlite").is_file()
