"""``visae train`` / ``visae export`` end to end on a real (tiny) activation store."""

from __future__ import annotations

import json

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
            "--out", str(tmp_path / "run"), "--batch-size", "128", "--tokens", "2560"]
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
    # running again without --force or --resume is refused in one line
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.startswith("error:") and "--force" in err and len(err.strip().splitlines()) == 1


def test_sweep_file_and_bad_input(tmp_path, capsys):
    store = _store(tmp_path / "acts")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'store = "{store}"\nbatch_size = 128\ntokens = 1280\n\n[[sae]]\nk = 2\n\n[[sae]]\narch = "batchtopk"\n')
    code, out, err = _run(["train", "--sweep", str(sweep), "--expansion", "2", "--out", str(tmp_path / "sw")], capsys)
    assert code == 0, err
    assert sorted(line.rsplit("/", 1)[1] for line in out.split()) == ["batchtopk-k32-x2", "topk-k2-x2"]
    code, _, err = _run(["train", "--store", str(store), "--arch", "topkk", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "did you mean 'topk'" in err
    code, _, err = _run(["train", "--store", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "no such directory" in err


@pytest.mark.parametrize("flag", ["--help"])
def test_help_teaches(flag, capsys):
    code, out, _ = _run(["train", flag], capsys)
    assert code == 0 and "--resume" in out and "SAELens" in out
