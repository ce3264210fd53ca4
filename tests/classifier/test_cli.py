"""The `visae classifier` commands: flags in, stage called, one-line errors."""

from __future__ import annotations

import json

import pytest

from visae.cli import main

TINY_TOML = 'patch_size = 2\nhidden_sizes = [8, 16]\ndepths = [1, 1]\nprecision = "fp32"\nchannels_last = "off"\n'


def test_train_then_eval(bars_spec, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    out = tmp_path / "clf"
    args = ["classifier", "train", "--data", bars_spec, "--out", str(out), "--epochs", "1", "--size", "16",
            "--batch-size", "50", "--config", str(tmp_path / "tiny.toml")]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0 and capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / "visae_classifier.json").read_text())["config"]["batch_size"] == 50

    with pytest.raises(SystemExit) as e:
        main(args)  # again, without --force: the same settings reuse the classifier
    assert e.value.code == 0 and capsys.readouterr().out.strip() == str(out)
    with pytest.raises(SystemExit) as e:
        main([*args, "--epochs", "2"])  # other settings are refused, naming them
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "trained with other settings (epochs: 1 -> 2)" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1

    with pytest.raises(SystemExit) as e:
        main(["classifier", "eval", "--model", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "val" and report["n"] == 100 and set(report["levels"]) == {"variant", "family", "manufacturer"}

    with pytest.raises(SystemExit):
        main(["classifier", "eval", "--model", str(out), "--split", "train"])
    text = capsys.readouterr().out
    assert "[train]: 200 labelled images" in text and "family" in text and "top-1" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "bad value for 'epochs'"),
        (["--precision", "fp16"], "bad value for 'precision'"),
        (["--data", "nosuch:thing"], "unknown data source scheme 'nosuch'"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, args, message):
    base = {"--data": "synth-aircraft:/nonexistent", "--out": str(tmp_path / "o")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    with pytest.raises(SystemExit) as e:
        main(["classifier", "train", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_eval_refuses_what_is_not_a_classifier(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["classifier", "eval", "--model", str(tmp_path)])
    assert e.value.code == 2 and "not a visae artifact, not a classifier" in capsys.readouterr().err
