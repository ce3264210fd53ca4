"""How ``visae ... --help`` reads, and small CLI fixes: export's refusal hint, steer-eval's --doses.

Runs the real command line (``visae.cli.main``) at a fixed width of 120 columns.
"""

from __future__ import annotations

import re

import pytest
from cli_helpers import run

from visae.cli.app import reflow

HELPS = [[], ["train"], ["extract"], ["steer"], ["store", "verify"], ["layers"], ["export"], ["steer-eval"]]


@pytest.fixture(autouse=True)
def _width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")  # no colour codes in the captured text


def _help(*args: str) -> str:
    res = run(*args, "--help")
    assert res.code == 0, res.err
    return res.out


@pytest.mark.parametrize("args", HELPS, ids=lambda a: " ".join(a) or "visae")
def test_help_has_no_placeholders(args):
    text = _help(*args)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "<bool>" not in text
    help_line = next(line for line in text.splitlines() if re.match(r"│[\s*]*--help\b", line))
    assert re.search(r"--help\s+Show this message", help_line), help_line


def test_positional_arguments_read_as_metavars():
    assert re.search(r"Usage: visae store verify \[OPTIONS\] PATH\b", _help("store", "verify"))
    assert re.search(r"Usage: visae layers \[OPTIONS\] MODEL\b", _help("layers"))
    assert re.search(r"Usage: visae export \[OPTIONS\] SRC\b", _help("export"))


def test_hard_wrapped_docstring_is_reflowed():
    # hard-wrapped after "--out RUN, one" in cli/train.py's docstring
    lines = [line.strip() for line in _help("train").splitlines()]
    assert any("--config sweep.toml --out RUN, one [[sae]] table per SAE" in line for line in lines), "\n".join(lines)


def test_flags_keep_their_values_placeholder():
    text = _help("train")
    assert re.search(r"--batch-size\s+<int>", text) and re.search(r"--resume\s+Continue", text)


def test_reflow_keeps_paragraphs_examples_and_items():
    text = """First line
    continues here.

    A paragraph
    wrapped in the source:
        $ visae demo
        visae train --help
    - an item
      that wraps
    - another item
    $ a command

    \b
    kept
    as is
    """
    assert reflow(text) == (
        "First line continues here.\n\n"
        "A paragraph wrapped in the source:\n"
        "    $ visae demo\n"
        "    visae train --help\n"
        "- an item that wraps\n"
        "- another item\n"
        "$ a command\n\n"
        "\b\nkept\nas is"
    )


def test_extract_example_names_a_layer_of_the_demo_classifier():
    text = _help("extract")
    assert "convnext.encoder.stages.1" in text and "stages.2" not in text


def test_export_twice_suggests_only_force(tmp_path, monkeypatch):
    from visae.sae.base import SAESpec, create_sae
    from visae.sae.saelens import save_saelens

    monkeypatch.setenv("VISAE_QUIET", "1")
    src = save_saelens(create_sae(SAESpec(arch="topk", d_in=8, d_sae=16, k=2)), tmp_path / "src")
    first = run("export", src, "--out", tmp_path / "exp")
    assert first.code == 0, first.err
    again = run("export", src, "--out", tmp_path / "exp")
    assert again.code == 2 and len(again.err_lines) == 1, again.err
    assert "--force" in again.err and "--resume" not in again.err


def test_resumable_kinds_still_suggest_resume(tmp_path):
    from visae.artifact import prepare_out, write_marker
    from visae.errors import VisaeError
    from visae.lock import locked

    out = tmp_path / "store"
    with locked(out):
        prepare_out(out, "store")
        write_marker(out, "store")
        with pytest.raises(VisaeError, match="--resume"):
            prepare_out(out, "store")
        with pytest.raises(VisaeError) as e:
            prepare_out(out, "store", resumable=False)
        assert "--resume" not in str(e.value) and "--force" in str(e.value)


def test_steer_eval_doses_reach_the_config(tmp_path, monkeypatch):
    import visae.steering.evaluate as evaluate
    import visae.steering.headline as headline

    seen = {}
    monkeypatch.setattr(evaluate, "steer_eval", lambda cfg: seen.setdefault("cfg", cfg) and {})
    monkeypatch.setattr(headline, "headline_lines", lambda summary: [])
    res = run("steer-eval", "--run", tmp_path, "--doses", "-1,0,2")
    assert res.code == 0, res.err
    assert seen["cfg"].doses == [-1.0, 0.0, 2.0]
    assert "--doses" in _help("steer-eval")


def test_steer_eval_bad_doses_is_one_line(tmp_path):
    res = run("steer-eval", "--run", tmp_path, "--doses", "1,x")
    assert res.code == 2 and len(res.err_lines) == 1 and res.err.startswith("error: --doses")


def test_run_is_exported():
    import visae
    from visae.sae.trainer import Run

    assert visae.Run is Run and "Run" in visae.__all__
