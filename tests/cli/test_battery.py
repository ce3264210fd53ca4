"""The bad-input battery: every command, fed typos, wrong kinds of artifact, damaged files, wrong
numbers, wrong paths and conflicting flags, through the real command line (``visae.cli.main``).

Each case must end with exit status 2, exactly one stderr line starting ``error:`` (warnings
before it are allowed, nothing else), no traceback anywhere, and no change to any file of the
fixtures' artifacts (all checksummed before and after). Click's usage errors keep click's own
output; they are a separate, smaller list. The fixtures are built once, with the real commands
at tiny sizes: a synth-aircraft dataset, a ConvNeXt classifier, a store, a trained and analysed
SAE run, an exported SAE, and damaged copies of them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import must, run, snapshot

LAYER = "convnext.encoder.stages.1"


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, str]:
    """Placeholder -> path of every fixture (NEW / LONG are filled per case)."""
    root = tmp_path_factory.mktemp("battery")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISAE_QUIET", "1")
        paths = _build(root)
    return {k: str(v) for k, v in paths.items()}


def _build(root: Path) -> dict[str, Path]:
    p = {k: root / k.lower() for k in ("DATA", "CLF", "STORE", "RUN", "EXP")}
    must("data", "synth-aircraft", "--out", p["DATA"], "--n-train", 44, "--n-val", 22, "--n-ood", 0, "--size", 32,
         "--workers", 1)  # fmt: skip
    (root / "clf.toml").write_text('hidden_sizes = [8, 16]\ndepths = [1, 1]\nchannels_last = "off"\n')
    must("classifier", "train", "--data", f"synth-aircraft:{p['DATA']}", "--out", p["CLF"], "--epochs", 1,
         "--batch-size", 16, "--size", 32, "--precision", "fp32", "--device", "cpu", "--config", root / "clf.toml")  # fmt: skip
    must("extract", "--model", f"hf:{p['CLF']}", "--layer", LAYER, "--data", f"synth-aircraft:{p['DATA']}",
         "--out", p["STORE"], "--batch-size", 16, "--device", "cpu")  # fmt: skip
    must("train", "--store", p["STORE"], "--out", p["RUN"], "--k", 4, "--expansion", 2, "--batch-size", 64,
         "--holdout", 0.2, "--device", "cpu")  # fmt: skip
    must("analyze", "--run", p["RUN"], "--device", "cpu", "--no-text-labels", "--no-random-baseline", "--min-images", 1)
    must("export", p["RUN"], "--out", p["EXP"])
    return p | _damaged(root, p)


def _damaged(root: Path, p: dict[str, Path]) -> dict[str, Path]:
    """Copies of the fixtures with one thing broken each, and other wrong inputs."""
    d: dict[str, Path] = {}

    def copy(name: str, src: Path) -> Path:
        d[name] = root / name.lower()
        shutil.copytree(src, d[name])
        return d[name]

    (copy("CLF_BADCFG", p["CLF"]) / "config.json").write_text('{"model_type": "convnext",')
    cfg = json.loads((p["CLF"] / "config.json").read_text())
    (copy("CLF_UNKNOWN", p["CLF"]) / "config.json").write_text(json.dumps({**cfg, "model_type": "nosuchmodel"}))
    os.truncate(copy("CLF_TRUNC", p["CLF"]) / "model.safetensors", 500)
    (copy("CLF_NOMETA", p["CLF"]) / "visae_classifier.json").unlink()
    ckpt = copy("CLF_CKPT", p["CLF"])  # an interrupted classifier run whose checkpoint is torn
    marker = json.loads((ckpt / "visae.json").read_text())
    (ckpt / "visae.json").write_text(json.dumps({**marker, "complete": False}))
    (ckpt / "checkpoint.pt").write_bytes(b"PK\x03\x04 torn")
    weights = next((copy("RUN_TRUNC", p["RUN"]) / "saes").iterdir()) / "sae_weights.safetensors"
    os.truncate(weights, 100)
    (copy("EXP_BADCFG", p["EXP"]) / "cfg.json").write_text("not json")
    (copy("STORE_NOSHARD", p["STORE"]) / "shard_000000.npy").unlink()
    os.truncate(copy("STORE_TRUNC", p["STORE"]) / "shard_000000.npy", 1000)
    (copy("STORE_BADMETA", p["STORE"]) / "metadata.json").write_text('{"format_version": 1,')
    (copy("RUN_BADDB", p["RUN"]) / "features.sqlite").write_bytes(b"this is not an SQLite database" * 10)
    rng = np.random.default_rng(0)
    d["JUNK"] = root / "junk"  # a folder of two classes where no image can be read
    for cls, suffix in (("a", ".jpg"), ("b", ".png")):
        (d["JUNK"] / cls).mkdir(parents=True)
        for i in range(3):
            (d["JUNK"] / cls / f"x{i}{suffix}").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    d["FILE"] = root / "notes.txt"
    d["FILE"].write_text("a regular file\n")
    d["BADTOML"] = root / "bad.toml"
    d["BADTOML"].write_text("epochs = = 3\n")
    d["DEMO_BAD"] = root / "demo_bad"  # a demo folder whose sae/ step folder is in fact a store
    shutil.copytree(p["STORE"], d["DEMO_BAD"] / "sae")
    d["FOREIGN"] = root / "foreign"
    d["FOREIGN"].mkdir()
    (d["FOREIGN"] / "thesis.tex").write_text("mine")
    d["SCRATCH"] = root / "scratch"
    d["SCRATCH"].mkdir()
    return d


def _clf(*extra: object) -> list[object]:
    return ["classifier", "train", "--data", "synth-aircraft:{DATA}", "--out", "{NEW}", "--epochs", 1, "--size", 32,
            "--device", "cpu", *extra]  # fmt: skip


def _extract(*extra: object, data: str = "synth-aircraft:{DATA}", model: str = "hf:{CLF}") -> list[object]:
    return ["extract", "--model", model, "--layer", LAYER, "--data", data, "--out", "{NEW}", "--device", "cpu", *extra]


def _train(*extra: object, store: str = "{STORE}") -> list[object]:
    return ["train", "--store", store, "--out", "{NEW}", "--k", 4, "--expansion", 2, "--batch-size", 64,
            "--device", "cpu", *extra]  # fmt: skip


CASES: dict[str, list[object]] = {
    # data synth-aircraft
    "synth-out-exists": ["data", "synth-aircraft", "--out", "{DATA}", "--n-train", 22, "--n-val", 0, "--n-ood", 0],
    "synth-out-is-file": ["data", "synth-aircraft", "--out", "{FILE}", "--n-train", 22, "--n-val", 0, "--n-ood", 0],
    "synth-out-under-file": ["data", "synth-aircraft", "--out", "{FILE}/data", "--n-train", 22, "--n-val", 0, "--n-ood", 0],
    "synth-out-name-too-long": ["data", "synth-aircraft", "--out", "{LONG}", "--n-train", 22, "--n-val", 0, "--n-ood", 0],
    "synth-size-too-small": ["data", "synth-aircraft", "--out", "{NEW}", "--size", 8],
    "synth-negative-count": ["data", "synth-aircraft", "--out", "{NEW}", "--n-train", -1],
    "synth-fewer-than-classes": ["data", "synth-aircraft", "--out", "{NEW}", "--n-train", 5],
    "synth-difficulty-typo": ["data", "synth-aircraft", "--out", "{NEW}", "--difficulty", "insane"],
    "synth-zero-workers": ["data", "synth-aircraft", "--out", "{NEW}", "--workers", 0],
    # data info
    "info-scheme-typo": ["data", "info", "folderr:{JUNK}"],
    "info-store-as-dataset": ["data", "info", "synth-aircraft:{STORE}"],
    "info-missing-folder": ["data", "info", "folder:{NEW}"],
    "info-file-as-folder": ["data", "info", "folder:{FILE}"],
    "info-no-path": ["data", "info", "synth-aircraft:"],
    "info-hf-not-cached": ["data", "info", "hf:nobody-battery/no-such-dataset"],
    # classifier train
    "clf-all-unreadable": ["classifier", "train", "--data", "folder:{JUNK}", "--out", "{NEW}", "--device", "cpu"],
    "clf-zero-epochs": _clf("--epochs", 0),
    "clf-negative-lr": _clf("--lr", -1),
    "clf-nan-lr": _clf("--lr", "nan"),
    "clf-inf-lr": _clf("--lr", "inf"),
    "clf-huge-size": _clf("--size", 100000),
    "clf-precision-fp16": _clf("--precision", "fp16"),
    "clf-split-typo": _clf("--train-split", "trian"),
    "clf-force-and-resume": _clf("--force", "--resume"),
    "clf-bad-toml": _clf("--config", "{BADTOML}"),
    "clf-out-is-store": ["classifier", "train", "--data", "synth-aircraft:{DATA}", "--out", "{STORE}", "--device", "cpu"],
    "clf-resume-finished": ["classifier", "train", "--data", "synth-aircraft:{DATA}", "--out", "{CLF}", "--resume"],
    "clf-torn-checkpoint": ["classifier", "train", "--data", "synth-aircraft:{DATA}", "--out", "{CLF_CKPT}",
                            "--epochs", 1, "--batch-size", 16, "--size", 32, "--precision", "fp32", "--device", "cpu",
                            "--resume"],  # fmt: skip
    "clf-init-truncated": _clf("--init", "hf:{CLF_TRUNC}"),
    "clf-data-is-run": ["classifier", "train", "--data", "synth-aircraft:{RUN}", "--out", "{NEW}"],
    "clf-out-under-file": ["classifier", "train", "--data", "synth-aircraft:{DATA}", "--out", "{FILE}/clf"],
    "clf-out-name-too-long": ["classifier", "train", "--data", "synth-aircraft:{DATA}", "--out", "{LONG}"],
    # classifier eval
    "eval-store-as-model": ["classifier", "eval", "--model", "{STORE}"],
    "eval-truncated-weights": ["classifier", "eval", "--model", "{CLF_TRUNC}"],
    "eval-broken-config": ["classifier", "eval", "--model", "{CLF_BADCFG}"],
    "eval-missing-metadata": ["classifier", "eval", "--model", "{CLF_NOMETA}"],
    "eval-split-typo": ["classifier", "eval", "--model", "{CLF}", "--split", "vall"],
    "eval-zero-batch": ["classifier", "eval", "--model", "{CLF}", "--batch-size", 0],
    "eval-foreign-classes": ["classifier", "eval", "--model", "{CLF}", "--data", "folder:{JUNK}"],
    # layers
    "layers-negative-size": ["layers", "hf:{CLF}", "--size", -3],
    "layers-zero-size": ["layers", "hf:{CLF}", "--size", 0],
    "layers-huge-size": ["layers", "hf:{CLF}", "--size", 100000],
    "layers-size-below-kernel": ["layers", "hf:{CLF}", "--size", 1],
    "layers-broken-config": ["layers", "hf:{CLF_BADCFG}"],
    "layers-unknown-model-type": ["layers", "hf:{CLF_UNKNOWN}"],
    "layers-truncated-weights": ["layers", "hf:{CLF_TRUNC}"],
    "layers-scheme-typo": ["layers", "hff:{CLF}"],
    "layers-store-as-model": ["layers", "hf:{STORE}"],
    "layers-filter-no-match": ["layers", "hf:{CLF}", "--filter", "attention"],
    "layers-device-typo": ["layers", "hf:{CLF}", "--device", "gpu0"],
    # extract
    "extract-all-unreadable": _extract(data="folder:{JUNK}"),
    "extract-layer-typo": ["extract", "--model", "hf:{CLF}", "--layer", "convnext.encoder.stage.1", "--data",
                           "synth-aircraft:{DATA}", "--out", "{NEW}", "--device", "cpu"],  # fmt: skip
    "extract-layer-twice": _extract("--layer", LAYER),
    "extract-into-store-other-settings": ["extract", "--model", "hf:{CLF}", "--layer", LAYER, "--data",
                                          "synth-aircraft:{DATA}", "--out", "{STORE}", "--device", "cpu"],  # fmt: skip
    "extract-into-run": ["extract", "--model", "hf:{CLF}", "--layer", LAYER, "--data", "synth-aircraft:{DATA}",
                         "--out", "{RUN}", "--device", "cpu"],  # fmt: skip
    "extract-zero-batch": _extract("--batch-size", 0),
    "extract-negative-max-images": _extract("--max-images", -4),
    "extract-dtype-int8": _extract("--dtype", "int8"),
    "extract-cls-of-cnn": _extract("--tokens", "cls"),
    "extract-split-typo": _extract("--split", "tain"),
    "extract-truncated-model": _extract(model="hf:{CLF_TRUNC}"),
    "extract-no-model": ["extract", "--layer", LAYER, "--data", "synth-aircraft:{DATA}", "--out", "{NEW}"],
    "extract-bad-toml": _extract("--config", "{BADTOML}"),
    "extract-out-under-file": ["extract", "--model", "hf:{CLF}", "--layer", LAYER, "--data", "synth-aircraft:{DATA}",
                               "--out", "{FILE}/store", "--device", "cpu"],  # fmt: skip
    "extract-out-name-too-long": ["extract", "--model", "hf:{CLF}", "--layer", LAYER, "--data",
                                  "synth-aircraft:{DATA}", "--out", "{LONG}", "--device", "cpu"],  # fmt: skip
    # store info / verify
    "store-info-of-run": ["store", "info", "{RUN}"],
    "store-info-of-file": ["store", "info", "{FILE}"],
    "store-info-broken-metadata": ["store", "info", "{STORE_BADMETA}"],
    "store-verify-of-run": ["store", "verify", "{RUN}"],
    "store-verify-missing": ["store", "verify", "{NEW}"],
    # train
    "train-run-as-store": _train(store="{RUN}"),
    "train-missing-shard": _train(store="{STORE_NOSHARD}"),
    "train-truncated-shard": _train(store="{STORE_TRUNC}"),
    "train-broken-metadata": _train(store="{STORE_BADMETA}"),
    "train-zero-k": _train("--k", 0),
    "train-nan-lr": _train("--lr", "nan"),
    "train-inf-lr": _train("--lr", "inf"),
    "train-negative-batch": _train("--batch-size", -5),
    "train-holdout-all": _train("--holdout", 1.0),
    "train-negative-tokens": _train("--training-tokens", -1),
    "train-prefixes-typo": _train("--arch", "matryoshka", "--prefixes", "4,8,x"),
    "train-arch-typo": _train("--arch", "topkk"),
    "train-tokens-cls": _train("--tokens", "cls"),
    "train-eval-store-is-run": _train("--eval-store", "{RUN}"),
    "train-out-exists": ["train", "--store", "{STORE}", "--out", "{RUN}", "--k", 4, "--expansion", 2],
    "train-resume-and-force": ["train", "--store", "{STORE}", "--out", "{RUN}", "--resume", "--force"],
    "train-bad-toml": _train("--config", "{BADTOML}"),
    "train-missing-config": _train("--config", "{NEW}.toml"),
    "train-config-and-sweep": _train("--config", "{BADTOML}", "--sweep", "{BADTOML}"),
    "train-no-gpu": _train("--device", "cuda:3"),
    "train-out-under-file": ["train", "--store", "{STORE}", "--out", "{FILE}/run", "--k", 4, "--expansion", 2],
    "train-out-name-too-long": ["train", "--store", "{STORE}", "--out", "{LONG}", "--k", 4, "--expansion", 2],
    # export
    "export-store": ["export", "{STORE}", "--out", "{NEW}"],
    "export-truncated-weights": ["export", "{RUN_TRUNC}", "--out", "{NEW}"],
    "export-broken-cfg": ["export", "{EXP_BADCFG}", "--out", "{NEW}"],
    "export-out-is-file": ["export", "{RUN}", "--out", "{FILE}"],
    "export-out-exists": ["export", "{RUN}", "--out", "{EXP}"],
    "export-name-typo": ["export", "{RUN}", "--out", "{NEW}", "--name", "topk-k4-x3"],
    "export-out-name-too-long": ["export", "{RUN}", "--out", "{LONG}"],
    # analyze
    "analyze-store-as-run": ["analyze", "--run", "{STORE}"],
    "analyze-already-done": ["analyze", "--run", "{RUN}"],
    "analyze-negative-top": ["analyze", "--run", "{RUN}", "--force", "--top", -1],
    "analyze-missing-vocab": ["analyze", "--run", "{RUN}", "--force", "--vocab", "{NEW}.txt", "--device", "cpu"],
    "analyze-run-as-store": ["analyze", "--run", "{RUN}", "--force", "--store", "{RUN}", "--device", "cpu"],
    "analyze-missing-shard": ["analyze", "--run", "{RUN}", "--force", "--store", "{STORE_NOSHARD}", "--device", "cpu"],
    "analyze-tokens-cls": ["analyze", "--run", "{RUN}", "--force", "--tokens", "cls", "--device", "cpu"],
    # report
    "report-store-as-run": ["report", "--run", "{STORE}"],
    "report-not-analysed": ["report", "--run", "{NEW}"],
    "report-broken-db": ["report", "--run", "{RUN_BADDB}"],
    "report-negative-latents": ["report", "--run", "{RUN}", "--latents", -2],
    "report-out-is-dir": ["report", "--run", "{RUN}", "--out", "{RUN}"],
    "report-out-foreign-file": ["report", "--run", "{RUN}", "--out", "{FILE}"],
    "report-out-under-file": ["report", "--run", "{RUN}", "--out", "{FILE}/report.html"],
    "report-out-name-too-long": ["report", "--run", "{RUN}", "--out", "{LONG}.html"],
    # demo
    "demo-out-is-store": ["demo", "--quick", "--out", "{STORE}"],
    "demo-out-is-file": ["demo", "--quick", "--out", "{FILE}"],
    "demo-step-folder-is-store": ["demo", "--quick", "--out", "{DEMO_BAD}"],
    "demo-force-foreign-files": ["demo", "--quick", "--out", "{FOREIGN}", "--force"],
    "demo-negative-seed": ["demo", "--seed", -1],
    "demo-out-name-too-long": ["demo", "--quick", "--out", "{LONG}"],
    # a required setting left out: named in plain words (tests/cli/test_options.py checks the words)
    "synth-no-out": ["data", "synth-aircraft"],
    "clf-no-data": ["classifier", "train", "--out", "{NEW}"],
    "clf-no-out": ["classifier", "train", "--data", "synth-aircraft:{DATA}"],
    "extract-no-out": ["extract", "--model", "hf:{CLF}", "--layer", LAYER, "--data", "synth-aircraft:{DATA}"],
    "extract-no-layer": ["extract", "--model", "hf:{CLF}", "--data", "synth-aircraft:{DATA}", "--out", "{NEW}"],
    "extract-no-data": ["extract", "--model", "hf:{CLF}", "--layer", LAYER, "--out", "{NEW}"],
    "train-no-store": ["train", "--out", "{NEW}"],
    "train-no-out": ["train", "--store", "{STORE}"],
    "analyze-no-run": ["analyze"],
    "report-no-run": ["report"],
}

USAGE: dict[str, list[object]] = {
    "unknown-command": ["trian"],
    "unknown-flag": ["train", "--store", "{STORE}", "--ot", "{NEW}"],
    "missing-argument": ["layers"],
    "not-an-integer": ["layers", "hf:{CLF}", "--size", "abc"],
    "not-a-number": ["train", "--store", "{STORE}", "--out", "{NEW}", "--lr", "fast"],
    "missing-group-command": ["store", "inf", "{STORE}"],
}


def _argv(template: list[object], fx: dict[str, str], case: str) -> list[str]:
    values = {**fx, "NEW": f"{fx['SCRATCH']}/{case}", "LONG": f"{fx['SCRATCH']}/{'x' * 300}"}
    return [str(a).format(**values) for a in template]


def _protected(fx: dict[str, str]) -> dict[str, str]:
    return snapshot(Path(fx["SCRATCH"]).parent, skip=(Path(fx["SCRATCH"]),))


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clean_line_and_changes_nothing(case, fx, quiet):
    before = _protected(fx)
    res = run(*_argv(CASES[case], fx, case))
    assert res.code == 2, f"exit {res.code}\n{res.err}{res.out}"
    errors = [line for line in res.err_lines if line.startswith("error:")]
    others = [line for line in res.err_lines if not line.startswith(("error:", "warning:"))]
    assert len(errors) == 1 and res.err_lines[-1] == errors[0] and not others, res.err
    assert "Traceback" not in res.err + res.out and "internal error" not in errors[0], res.err
    assert _protected(fx) == before, "an existing artifact changed"


@pytest.mark.parametrize("case", USAGE)
def test_usage_errors_keep_clicks_message(case, fx, quiet):
    before = _protected(fx)
    res = run(*_argv(USAGE[case], fx, case))
    assert res.code == 2 and "Usage:" in res.err and "Traceback" not in res.err + res.out, res.err
    assert _protected(fx) == before


def test_every_command_is_in_the_battery():
    from visae.cli import app
    from visae.cli.app import app as root

    assert app is root
    tried = {" ".join(str(a) for a in argv[:2]) for argv in CASES.values()}
    for name in ("data synth-aircraft", "data info", "classifier train", "classifier eval", "store info",
                 "store verify"):  # fmt: skip
        assert name in tried
    tried_top = {str(argv[0]) for argv in CASES.values()}
    assert {"layers", "extract", "train", "export", "analyze", "report", "demo"} <= tried_top
    assert len(CASES) >= 60


def test_extracting_unreadable_images_leaves_no_complete_store(fx, quiet):
    out = Path(fx["SCRATCH"]) / "unreadable-store"
    res = run(*_argv(_extract(data="folder:{JUNK}"), fx, "unreadable-store"))
    assert res.code == 2 and "none of the 6 images" in res.err
    meta = out / "metadata.json"
    assert not meta.exists() or json.loads(meta.read_text())["complete"] is False
    verify = run("store", "verify", out)
    assert verify.code != 0 and not verify.out.startswith("ok")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500; the path-under-a-file cases cover this")
def test_unwritable_output_directory(fx, quiet, tmp_path):
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    locked_dir.chmod(0o500)
    try:
        res = run("export", fx["RUN"], "--out", locked_dir / "sae")
    finally:
        locked_dir.chmod(0o700)
    assert res.code == 2 and len(res.err_lines) == 1 and res.err.startswith("error: ") and "Traceback" not in res.err
