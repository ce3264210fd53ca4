"""`visae steer` and `visae steer-eval` on a small real run of the synthetic aircraft, as a user types them."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_helpers import run as cli_run

import visae


def run(*args: object) -> tuple[int, str, str]:
    res = cli_run(*args)
    return res.code, res.out, res.err


def live_latent(run_dir) -> int:
    with visae.FeatureDB(run_dir) as db:
        return int(db.query("SELECT id FROM latents ORDER BY freq DESC LIMIT 1")[0]["id"])


def test_steer_prints_a_before_after_table_and_writes_heatmaps(synth_run, tmp_path):
    latent = live_latent(synth_run["run"])
    code, out, err = run("steer", "--run", synth_run["run"], "--image", "train/000001", "--image", "train/000002",
                         "--latent", latent, "--set=-2x", "--out", tmp_path / "maps", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "train/000001 (true: " in out and "margin" in out and "KL" in out and "2 image(s): flip rate" in out
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_the_api_gives_the_same_numbers_as_the_cli_and_an_empty_scale_changes_nothing(synth_run, tmp_path):
    latent = live_latent(synth_run["run"])
    res = visae.steer(run=synth_run["run"], image="train/000003", latent=[latent], scale="1", out=tmp_path, device="cpu")
    row = res["images"][0]
    assert row["before"] == row["after"] and row["kl"] == pytest.approx(0.0, abs=1e-9) and not row["flip"]
    res = visae.steer(run=synth_run["run"], image="train/000003", latent=[latent], set="-5x", out=tmp_path, device="cpu")
    assert res["images"][0]["kl"] > 0 and res["edit"]["ops"][0]["value"] < 0


@pytest.mark.parametrize("args, words", [
    (["--latent", "100000", "--scale", "0"], "out of range"),
    (["--latent", "0", "--scale", "inf"], "not finite"),
    (["--latent", "0", "--scale", "nan"], "not finite"),
    (["--latent", "0", "--scale", "two"], "is not a number"),
    (["--latent", "0", "--scale", "0", "--where", "99,0"], "outside the layer's"),
    (["--latent", "0", "--scale", "0", "--where", "cls"], "no CLS token"),
    (["--latent", "0", "--scale", "0", "--set", "1"], "exactly one of"),
    (["--latent", "0", "--scale", "0", "--image", "val/999999"], "is not in split"),
])  # fmt: skip
def test_bad_steer_input_is_one_line_and_writes_nothing(synth_run, args, words):
    steer_dir = synth_run["run"] / "steer"
    before = sorted(steer_dir.rglob("*")) if steer_dir.exists() else []
    image = [] if "--image" in args else ["--image", "train/000001"]
    code, out, err = run("steer", "--run", synth_run["run"], *image, *args, "--device", "cpu")
    assert code != 0 and words in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert (sorted(steer_dir.rglob("*")) if steer_dir.exists() else []) == before


def test_a_run_whose_layer_the_model_does_not_have_is_refused(synth_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(synth_run["run"], copy)
    for cfg_path in copy.rglob("cfg.json"):
        cfg = json.loads(cfg_path.read_text())
        cfg["visae"]["layer"] = "convnext.encoder.stages.7"
        cfg_path.write_text(json.dumps(cfg))
    code, _, err = run("steer", "--run", copy, "--image", "train/000001", "--latent", "0", "--scale", "0", "--device", "cpu")
    assert code != 0 and "unknown layer 'convnext.encoder.stages.7'" in err and len(err.strip().splitlines()) == 1
    assert not (copy / "steer").exists()


def test_steer_eval_writes_every_table_with_baselines_and_refuses_to_overwrite(synth_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(synth_run["run"], copy)
    args = ["steer-eval", "--run", copy, "--n-images", "64", "--per-group", "2", "--random-latents", "2", "--per-latent", "16",
            "--directions", "2", "--draws", "2", "--probe-images", "200", "--device", "cpu"]  # fmt: skip
    code, out, err = run(*args)
    assert code == 0, err
    assert "suppression of" in out and "random directions" in out and "segmentation (SAE-V)" in out
    steer = copy / "steer"
    for name in ("summary", "suppression", "dose", "ablation", "segmentation", "truth"):
        assert (steer / f"{name}.json").is_file(), name
    summary = json.loads((steer / "summary.json").read_text())
    assert summary["split"] == "val" and summary["images"] == 64
    assert set(summary["suppression"]) >= {"random", "random_direction"}
    sup = json.loads((steer / "suppression.json").read_text())
    row = next(r for r in sup["latents"] if r["images"])
    assert 0 <= row["suppress"]["flip_rate"] <= 1 and "suppress_random_direction" in row
    dose = json.loads((steer / "dose.json").read_text())
    first = next(iter(dose["latents"].values()))["rows"]
    assert [r["dose"] for r in first] == sorted(r["dose"] for r in first) and len(first) == 9
    zero = next(r for r in first if r["dose"] == 0)
    assert zero["images"] > 0
    assert (steer / "dose.png").is_file()
    code, _, err = run(*args)
    assert code != 0 and "--force" in err
