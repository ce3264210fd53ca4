"""`visae layers MODEL`: a table of hookable modules; user mistakes are one line, exit status 2."""

from __future__ import annotations

import pytest

from visae.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_layers_prints_names_shapes_and_token_layouts(hf_models, capsys):
    code, out, _ = run(["layers", f"hf:{hf_models['dinov2_reg']}", "--filter", "layer.1.mlp"], capsys)
    assert code == 0
    assert "encoder.layer.1.mlp.fc1" in out and "21x128" in out and "CLS + 4 reg + 4x4 patches" in out
    assert "encoder.layer.0" not in out
    code, out, _ = run(["layers", f"hf:{hf_models['convnext_cls']}", "--filter", "stages.3"], capsys)
    assert "map 2x2 (channels-last)" in out and "32x2x2" in out


def test_layers_user_errors_are_one_line(hf_models, capsys, tmp_path):
    code, out, err = run(["layers", f"hf:{hf_models['vit']}", "--filter", "nothing-like-this"], capsys)
    assert code == 2 and err.startswith("error: no layer name of") and err.count("\n") == 1
    code, out, err = run(["layers", f"hf:{tmp_path / 'nope'}"], capsys)
    assert code == 2 and "no such model directory" in err and "Traceback" not in err


def test_layers_help_teaches(capsys):
    code, out, _ = run(["layers", "--help"], capsys)
    assert code == 0
    assert "--random-init" in out and "--filter" in out and "timm:NAME" in out
