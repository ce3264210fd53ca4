"""``visae train`` / ``visae export`` end to end on a real (tiny) activation store."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from visae.cli import main
from visae.sae.importers import load_sae
from visae.store import StoreMeta, StoreWriter
from visae.store.format import INDEX_DTYPE

from sae_fixtures import planted


def _store(path, n_images=16, tokens_per_image=64):
    x_ND, _ = planted(n=n_images * tokens_per_image, d=16, s=48, k=3)
    meta = StoreMeta(
        backbone="toy:planted", layer="blocks.2", layout={"kind": "vit", "dim": 16, "grid": [8, 8]}, tokens="patch",
        preprocess={}, dataset="synthetic", split="train", dtype="fp32", d=16, shard_tokens=256,
        planned_images=n_images, checksum="sha256", config={},
    )  # fmt: skip
    w = StoreWriter.create(path, meta)
    for i in range(n_images):
        rows = np.zeros(tokens_per_image, dtype=INDEX_DTYPE)
        rows["image"] = i
        w.add(x_ND[i * tokens_per_image : (i + 1) * tokens_per_image], rows, {i: f"img{i}"})
    w.close()
    return path


def _run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_then_export(tmp_path, capsys):
    store = _store(tmp_path / "acts")
    argv = ["train", "--store", str(store), "--arch", "topk", "--k", "3", "--expansion", "4",
            "--out", str(tmp_path / "run"), "--batch-size", "128", "--training-tokens", "2560"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert out.strip().endswith("saes/topk-k3-x4")
    sae = load_sae(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "saes" / "topk-k3-x4" / "cfg.json").read_text())
    assert cfg["visae"]["backbone"] == "toy:planted" and cfg["visae"]["layout"]["grid"] == [8, 8]
    assert "shards" not in cfg["visae"]["store_meta"]
    code, out, err = _run(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exp")], capsys)
    assert code == 0, err
    back = load_sae(tmp_path / "exp")
    x = torch.randn(4, 16)
    assert torch.equal(back(x).recon_BD, sae(x).recon_BD)
    # running again with other settings, without --force or --resume, is refused in one line
    code, _, err = _run(argv + ["--lr", "1e-3"], capsys)
    assert code == 2 and err.startswith("error:") and "--force" in err and len(err.strip().splitlines()) == 1


def test_sweep_file_and_bad_input(tmp_path, capsys):
    store = _store(tmp_path / "acts")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'store = "{store}"\nbatch_size = 128\ntokens = 1280\n\n[[sae]]\nk = 2\n\n[[sae]]\narch = "batchtopk"\nk = 4\n')
    code, out, err = _run(["train", "--sweep", str(sweep), "--expansion", "2", "--out", str(tmp_path / "sw")], capsys)
    assert code == 0, err
    assert sorted(line.rsplit("/", 1)[1] for line in out.split()) == ["batchtopk-k4-x2", "topk-k2-x2"]
    code, _, err = _run(["train", "--store", str(store), "--arch", "topkk", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "did you mean 'topk'" in err
    code, _, err = _run(["train", "--store", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "no such directory" in err


@pytest.mark.parametrize("flag", ["--help"])
def test_help_teaches(flag, capsys):
    code, out, _ = _run(["train", flag], capsys)
    assert code == 0 and "--resume" in out and "SAELens" in out


# One valid, non-default value per setting (FILE) and another one per flag (FLAG). A field added to TrainConfig
# or SAEHparams without an entry in FILE fails test_every_setting_can_come_from_a_config_file; a common one
# deserves a flag of the same name too (and an entry in FLAG).
FILE = dict(
    store="acts", out="run", training_tokens=12_800, tokens="cls", holdout=0.1, eval_tokens=1000, eval_every=2560,
    eval_store="acts-val", batch_size=256, seed=3, dtype="bf16", device="cpu", parallel="latents", stream="split",
    resume=False, force=True, lr_warmup=0.02, lr_decay=0.3, sparsity_warmup=0.1, grad_clip=2.0, dead_tokens=5000, dead_fraction=0.2,
    checkpoint_every=1_000_000, log_every=7, median_sample=1000, normalize=False,
    name="mine", arch="matryoshka", k=8, expansion=4, d_sae=64, lr=1e-3, sparsity_coeff=0.5, auxk_coeff=0.1,
    prefixes=[16, 64], bandwidth=0.01, threshold_init=0.02,
)  # fmt: skip
FLAG = dict(
    store="acts2", out="run2", training_tokens=25_600, tokens="patch", holdout=0.2, eval_tokens=2000, eval_every=5120,
    eval_store="acts-test", batch_size=512, seed=4, dtype="fp32", device="cpu:0", parallel="sweep", stream="global",
    lr_warmup=0.03, lr_decay=0.4,
    sparsity_warmup=0.2, grad_clip=3.0, dead_tokens=6000, dead_fraction=0.3, checkpoint_every=2_000_000, log_every=9,
    median_sample=2000, normalize=True, name="yours", arch="jumprelu", k=9, expansion=8, d_sae=128, lr=2e-3,
    sparsity_coeff=0.7, auxk_coeff=0.2, prefixes=[32, 128], bandwidth=0.02, threshold_init=0.03,
)  # fmt: skip


def _toml(values):
    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)  # strings, numbers and lists of numbers are the same in TOML

    return "".join(f"{k} = {lit(v)}\n" for k, v in values.items())


def _settings(cfg):
    """Every setting of a one-SAE TrainConfig, by field name."""
    return {**cfg.model_dump(exclude={"saes"}), **cfg.saes[0].model_dump()}


def test_every_setting_can_come_from_a_config_file(tmp_path):
    from visae.sae.sweep import train_config
    from visae.sae.train_config import SAEHparams, TrainConfig

    fields = (set(TrainConfig.model_fields) - {"saes"}) | set(SAEHparams.model_fields)
    assert fields == set(FILE), f"settings without a test value: {sorted(fields - set(FILE))}"
    assert set(FLAG) <= fields
    defaults = _settings(TrainConfig.build(store="s", out="o"))
    # (resume and force contradict each other: resume is checked on its own below)
    assert all(FILE[f] != defaults[f] for f in fields - {"resume"}), "each test value must differ from the default"
    (tmp_path / "all.toml").write_text(_toml(FILE))
    assert _settings(train_config(tmp_path / "all.toml")) == FILE
    (tmp_path / "resume.toml").write_text(_toml({**FILE, "resume": True, "force": False}))
    assert train_config(tmp_path / "resume.toml").resume
    # the same per-SAE settings in a [[sae]] table
    run = {k: v for k, v in FILE.items() if k in TrainConfig.model_fields}
    table = {k: v for k, v in FILE.items() if k in SAEHparams.model_fields}
    (tmp_path / "table.toml").write_text(_toml(run) + "\n[[sae]]\n" + _toml(table))
    assert _settings(train_config(tmp_path / "table.toml")) == FILE


def test_train_config_doc_names_every_key_and_its_example_loads(tmp_path):
    from pathlib import Path

    from visae.sae.sweep import train_config
    from visae.sae.train_config import SAEHparams, TrainConfig

    doc = (Path(__file__).parents[2] / "docs" / "train-config.md").read_text()
    for key in (set(TrainConfig.model_fields) - {"saes"}) | set(SAEHparams.model_fields):
        assert f"| `{key}` |" in doc, f"docs/train-config.md does not describe '{key}'"
    example = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "example.toml").write_text(example)
    cfg = train_config(tmp_path / "example.toml")
    assert [h.arch for h in cfg.saes] == ["topk", "batchtopk", "matryoshka"]
    assert cfg.saes[2].spec(768).prefixes[-1] == cfg.saes[2].spec(768).d_sae


def test_flags_win_over_the_config_file(tmp_path, capsys, monkeypatch):
    import visae.sae.trainer as trainer
    from visae.sae.trainer import Run

    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg: seen.append(cfg) or Run(tmp_path, []))
    (tmp_path / "all.toml").write_text(_toml(FILE))
    argv = ["train", "--config", str(tmp_path / "all.toml")]
    for key, value in FLAG.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{key}")
        else:
            argv += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert _settings(seen[-1]) == {**FILE, **FLAG}  # (no flag un-sets force: it stays True)
    # the old meaning of --tokens (a count) still works, with a note
    code, _, err = _run(["train", "--config", str(tmp_path / "all.toml"), "--tokens", "2560"], capsys)
    assert code == 0 and "--training-tokens" in err
    assert (seen[-1].training_tokens, seen[-1].tokens) == (2560, "cls")
    # with no flag, the file's values stand
    code, _, err = _run(["train", "--config", str(tmp_path / "all.toml")], capsys)
    assert code == 0, err
    assert _settings(seen[-1]) == FILE


def test_config_file_with_several_saes(tmp_path, capsys, monkeypatch):
    import visae.sae.trainer as trainer
    from visae.sae.trainer import Run

    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg: seen.append(cfg) or Run(tmp_path, []))
    f = tmp_path / "sweep.toml"
    f.write_text('store = "acts"\nout = "run"\nexpansion = 2\nlr = 0.01\n\n[[sae]]\nk = 2\n\n'
                 '[[sae]]\narch = "batchtopk"\nk = 3\nlr = 0.02\n')  # fmt: skip
    for opt in ("--config", "--sweep"):  # --sweep: the old name
        code, _, err = _run(["train", opt, str(f), "--expansion", "4"], capsys)
        assert code == 0, err
        saes = [(h.arch, h.k, h.expansion, h.lr) for h in seen[-1].saes]
        assert saes == [("topk", 2, 4, 0.01), ("batchtopk", 3, 4, 0.02)]  # top level < table < flag


@pytest.mark.parametrize("text, match", [
    ('store = "a"\nout = "b"\nlr_warmpu = 0.1\n', "unknown key 'lr_warmpu'.*did you mean 'lr_warmup'"),
    ('store = "a"\nout = "b"\n[[sae]]\nk = 2\nbatch_size = 64\n', "table 1 has an unknown key 'batch_size'.*run sett"),
    ('store = "a"\nout = "b"\nsae = 3\n', "must be \\[\\[sae\\]\\] tables"),
    ('out = "b"\nk = 2\n', "needs --store"),
    ('store = "a"\nout = "b"\nk = 0\n', "bad value for 'saes.0.k'"),
])  # fmt: skip
def test_bad_config_files_are_explained(tmp_path, capsys, text, match):
    (tmp_path / "c.toml").write_text(text)
    code, _, err = _run(["train", "--config", str(tmp_path / "c.toml")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(match, err), err


def test_rerun_with_the_same_settings_reuses_the_finished_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VISAE_QUIET", raising=False)
    store = _store(tmp_path / "acts")
    argv = ["train", "--store", str(store), "--k", "3", "--expansion", "4", "--out", str(tmp_path / "run"),
            "--batch-size", "128", "--training-tokens", "2560"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    code, out, err = _run(argv + ["--device", "cpu"], capsys)  # the device is not a setting of the result
    assert code == 0, err
    assert "already trained (same settings); pass --force to redo it" in " ".join((out + err).split())
    assert out.strip().endswith("saes/topk-k3-x4")
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == files
    code, out, err = _run([a if a != "3" else "4" for a in argv], capsys)  # --k 4: other settings
    assert code == 2 and "trained with other settings (saes changed)" in err and "--force" in err
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == files
