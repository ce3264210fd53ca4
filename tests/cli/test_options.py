"""The stage commands' options are derived from the typed configs: a flag's help is its field's docstring and
its shown default the field's default, so the CLI and the Python API cannot drift apart."""

from __future__ import annotations

import pytest
from cli_helpers import run
from rich.markup import escape

from visae.analysis.run import AnalyzeConfig
from visae.classifier.config import ClassifierConfig
from visae.cli.options import default_text
from visae.config import field_doc
from visae.data.synth.generate import SynthAircraftConfig
from visae.reference_study import DemoConfig
from visae.extraction.config import ExtractConfig
from visae.reporting.build import ReportConfig
from visae.sae.train_config import SAEHparams, TrainConfig
from visae.evals.config import EvalConfig
from visae.steering.config import AblateConfig, SteerConfig, SteerEvalConfig

STAGES = {
    "extract": (ExtractConfig,),
    "train": (TrainConfig, SAEHparams),
    "analyze": (AnalyzeConfig,),
    "report": (ReportConfig,),
    "classifier train": (ClassifierConfig,),
    "data synth-aircraft": (SynthAircraftConfig,),
    "demo": (DemoConfig,),
    "steer": (SteerConfig,),
    "ablate": (AblateConfig,),
    "steer-eval": (SteerEvalConfig,),
    "eval": (EvalConfig,),
}
NOT_FIELDS = {"config", "sweep", "help"}
"""Flags that are not config fields (exempt)."""


def _command(path: str):
    import typer.main

    from visae.cli import app

    cmd = typer.main.get_command(app)
    for name in path.split():
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", STAGES)
def test_every_option_of_a_field_has_its_docstring_and_default(path):
    models = STAGES[path]
    params = [p for p in _command(path).params if p.name not in NOT_FIELDS]
    assert params
    for param in params:
        model = next((m for m in models if param.name in m.model_fields), None)
        assert model is not None, f"visae {path} --{param.name}: not a field of {[m.__name__ for m in models]}"
        field = model.model_fields[param.name]
        doc = field_doc(model, param.name)
        assert doc, f"{model.__name__}.{param.name} has no docstring"
        assert param.help.startswith(escape(doc)), f"visae {path} {param.opts[0]}: help is not the field's docstring"
        if field.is_required():
            assert param.help.endswith("\\[required]"), f"{param.opts[0]} is required but not marked"
        else:
            shown = default_text(field.get_default(call_default_factory=True))
            if shown is not None:
                assert param.help.endswith(f"\\[default: {shown}]"), f"{param.opts[0]}: default {shown} not shown"
        assert param.default is None, "an option left out must leave the field (or the --config file) to decide"


@pytest.mark.parametrize("path", STAGES)
def test_help_shows_defaults_and_required_marks(path):
    res = run(*path.split(), "--help")
    assert res.code == 0
    text = " ".join(res.out.replace("│", " ").split())
    for model in STAGES[path]:
        for name, field in model.model_fields.items():
            if field.is_required() and any(p.name == name for p in _command(path).params):
                assert "[required]" in text


MISSING = {
    ("extract", "--model", "hf:x", "--layer", "a", "--data", "folder:y"):
        "visae extract needs --out: the store directory to write",
    ("extract", "--model", "hf:x", "--data", "folder:y", "--out", "o"):
        "visae extract needs --layer: layer names as `visae layers MODEL` lists them",
    ("train", "--out", "o"): "visae train needs --store: activation store directory (from visae extract)",
    ("train", "--store", "s"): "visae train needs --out: run directory to write",
    ("analyze",): "visae analyze needs --run: the SAE run directory (from `visae train`)",
    ("report",): "visae report needs --run: the SAE run directory, analysed with `visae analyze`",
    ("classifier", "train", "--out", "o"): "visae classifier train needs --data: data spec of the training images",
    ("data", "synth-aircraft"): "visae data synth-aircraft needs --out: directory to write the dataset into",
}  # fmt: skip


@pytest.mark.parametrize("argv", MISSING, ids=lambda a: " ".join(a))
def test_a_missing_required_option_is_named_in_plain_words(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run(*argv)
    assert res.code == 2 and len(res.err_lines) == 1, res.err
    assert res.err.startswith(f"error: {MISSING[argv]}"), res.err
    assert "Field required" not in res.err and not list(tmp_path.iterdir())


def test_a_missing_option_can_come_from_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.toml").write_text('model = "hf:nowhere"\nlayers = ["a"]\ndata = "folder:nowhere"\n')
    res = run("extract", "--config", "x.toml")
    assert res.code == 2 and "needs --out" in res.err and "or set out in the --config file" in res.err
