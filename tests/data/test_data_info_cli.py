"""`visae data info` summarises a source, and bad specs end in one line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import visae.cli  # noqa: F401  (registers the commands)
from visae.cli import main
from visae.cli.app import app
from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft


def test_data_info_table_and_json(tmp_path):
    out = generate_synth_aircraft(SynthAircraftConfig(out=tmp_path / "d", n_train=44, n_val=22, n_ood=8, workers=1))
    res = CliRunner().invoke(app, ["data", "info", f"synth-aircraft:{out}"])
    assert res.exit_code == 0, res.output
    assert "variant (26) -> family (10) -> manufacturer (5)" in res.output
    res = CliRunner().invoke(app, ["data", "info", f"synth-aircraft:{out}", "--json"])
    d = json.loads(res.output)
    assert d["splits"]["train"]["size"] == 44 and d["splits"]["ood"]["labelled"] == 0


def test_bad_specs_are_one_line_errors(tmp_path, capsys):
    for spec, needle in [("folderr:/x", "did you mean 'folder'"), (f"folder:{tmp_path}/missing", "does not exist")]:
        try:
            main(["data", "info", spec])
        except SystemExit as e:
            assert e.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1
