"""visae.extract / train / analyze / report / demo: keywords named like the CLI flags -> the stage's typed config."""

from __future__ import annotations

import importlib

import pytest

import visae
from visae.errors import VisaeError


@pytest.fixture
def captured(monkeypatch):
    """Replace each stage function with one that records the config it was given."""
    got: dict[str, object] = {}

    def fake(name):
        def stage(cfg, *_, **__):
            got[name] = cfg
            return name

        return stage

    for module, name in [("visae.extraction.run", "extract"), ("visae.sae.trainer", "train"),
                         ("visae.analysis", "analyze"), ("visae.reporting", "report"), ("visae.reference_study", "demo"),
                         ("visae.steering.command", "steer"), ("visae.steering.command", "ablate"),
                         ("visae.steering.evaluate", "steer_eval"), ("visae.evals.run", "evaluate")]:  # fmt: skip
        monkeypatch.setattr(importlib.import_module(module), name, fake(name))
    return got


def test_layer_is_an_alias_of_a_one_layer_list():
    cfg = visae.ExtractConfig(model="hf:m", layer="encoder.stages.1", data="folder:d", out="o")
    assert cfg.layers == ["encoder.stages.1"]
    with pytest.raises(VisaeError, match="both 'layer' and 'layers'"):
        visae.ExtractConfig.build(model="hf:m", layer="a", layers=["b"], data="folder:d", out="o")


def test_flat_sae_keywords_build_the_same_config_as_the_cli_split(captured):
    from visae.sae.sweep import train_config

    assert visae.train(store="s", out="r", arch="batchtopk", k=8, expansion=4, lr=1e-3, batch_size=512) == "train"
    want = train_config(None, {"store": "s", "out": "r", "batch_size": 512}, {"arch": "batchtopk", "k": 8, "expansion": 4, "lr": 1e-3})
    assert captured["train"] == want and len(want.saes) == 1 and want.saes[0].k == 8


def test_a_toml_config_works_like_the_config_flag_and_keywords_win(captured, tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text('store = "s"\nout = "r"\nexpansion = 4\n[[sae]]\narch = "topk"\nk = 16\n[[sae]]\narch = "batchtopk"\nk = 32\n')
    visae.train(config=toml, k=8, seed=3)
    cfg = captured["train"]
    assert [(s.arch, s.k, s.expansion) for s in cfg.saes] == [("topk", 8, 4), ("batchtopk", 8, 4)] and cfg.seed == 3
    (tmp_path / "ex.toml").write_text('model = "hf:m"\nlayer = "l"\ndata = "folder:d"\nout = "o"\n')
    visae.extract(config=tmp_path / "ex.toml", batch_size=4)
    assert captured["extract"].layers == ["l"] and captured["extract"].batch_size == 4


def test_cli_negations_and_config_objects(captured, tmp_path):
    visae.analyze(run=tmp_path, no_random_baseline=True, no_text_labels=False, top=4)
    cfg = captured["analyze"]
    assert cfg.random_baseline is False and cfg.text_labels is True and cfg.top == 4
    report_cfg = visae.ReportConfig(run=tmp_path, latents=3)
    assert visae.report(report_cfg) == "report" and captured["report"] is report_cfg
    visae.report(report_cfg, images=2)
    assert captured["report"].latents == 3 and captured["report"].images == 2
    visae.demo(quick=True, out=tmp_path)
    assert captured["demo"] == visae.DemoConfig(quick=True, out=tmp_path)


def test_report_and_demo_stay_the_functions_once_their_modules_are_imported(captured, tmp_path):
    import visae.reference_study
    import visae.reporting  # modules named apart from the functions (as visae.extraction is from visae.extract)

    assert visae.report(run=tmp_path) == "report" and visae.demo(out=tmp_path) == "demo"
    assert visae.reporting.ReportConfig is visae.ReportConfig


def test_steer_is_the_function_and_its_lists_take_single_values(captured, tmp_path):
    import visae.steering  # the package is named apart from the function, as visae.reporting is from visae.report

    assert visae.steer(run=tmp_path, image="train/000001", latent=3, set="-2x") == "steer"
    cfg = captured["steer"]
    assert cfg.image == ["train/000001"] and cfg.latent == [3] and cfg.set == "-2x"
    assert visae.ablate(run=tmp_path, latent=3, images="train/000001") == "ablate" and captured["ablate"].images == ["train/000001"]
    assert visae.steer_eval(run=tmp_path, latents=[3, 5]) == "steer_eval" and captured["steer_eval"].latents == "3,5"
    with pytest.raises(VisaeError, match="exactly one of"):
        visae.steer(run=tmp_path, image="x", latent=3)


def test_eval_takes_single_runs_and_suites(captured, tmp_path):
    assert visae.eval(run=tmp_path, suite="core") == "evaluate"
    cfg = captured["evaluate"]
    assert cfg.run == [tmp_path] and cfg.suite == ["core"]
    visae.eval(run=[tmp_path, tmp_path], suite="all", allow_mismatch=True)
    assert captured["evaluate"].suite == ["core", "fidelity", "probe", "concepts", "ood", "ontology", "stability"]


def test_unknown_keywords_are_refused_with_a_suggestion(captured):
    with pytest.raises(VisaeError, match="unknown setting 'expansoin'.*did you mean 'expansion'"):
        visae.train(store="s", out="r", expansoin=4)
    with pytest.raises(VisaeError, match="unknown setting 'layer'"):
        visae.analyze(run="r", layer="x")
    with pytest.raises(VisaeError, match=r"visae train needs out=\.\.\.: .*; pass out=\.\.\., or set out in the config file"):
        visae.train(store="s")


@pytest.mark.parametrize("command", ["extract", "train", "analyze", "report", "demo", "steer", "ablate", "steer-eval", "eval"])
def test_every_cli_flag_is_a_keyword_of_the_function(captured, command):
    """One-to-one with the CLI: each (visible) option of the command is accepted under its own name."""
    import typer

    from visae.api import _flags
    from visae.cli import app
    from visae.sae.sweep import run_keys, sae_keys

    click_cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    cls = {"extract": visae.ExtractConfig, "train": visae.TrainConfig, "analyze": visae.AnalyzeConfig,
           "report": visae.ReportConfig, "demo": visae.DemoConfig, "steer": visae.SteerConfig,
           "ablate": visae.AblateConfig, "steer-eval": visae.SteerEvalConfig, "eval": visae.EvalConfig}[command]  # fmt: skip
    known = run_keys() | sae_keys() if command == "train" else None
    names = [p.name for p in click_cmd.params if not getattr(p, "hidden", False) and p.name != "config"]
    assert names and _flags(cls, {n: None for n in names}, known=known).keys() <= set(cls.model_fields) | sae_keys() | {"layer"}


def test_errors_name_keyword_arguments_not_flags(monkeypatch, tmp_path):
    """A refusal raised by a stage reads in the caller's terms: force=True, batch_size, not --force, --batch-size;
    a command quoted in backticks stays a command."""
    from visae.errors import in_python

    def refuse(cfg, *_, **__):
        raise VisaeError(f"{cfg.run} already holds a feature DB", "pass --force to analyse again, lower --batch-size 64, "
                         "or run `visae extract --split val --force` first; --no-random-baseline skips it")  # fmt: skip

    monkeypatch.setattr(importlib.import_module("visae.analysis"), "analyze", refuse)
    with pytest.raises(VisaeError) as e:
        visae.analyze(run=str(tmp_path))
    assert e.value.hint == ("pass force=True to analyse again, lower batch_size=64, or run `visae extract --split val "
                            "--force` first; random_baseline=False skips it")  # fmt: skip
    assert str(e.value).endswith(e.value.hint) and in_python("add --training-tokens") == "add training_tokens=..."
