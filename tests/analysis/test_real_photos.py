"""The real-photo case: foolbox's 20 ImageNet photos plus three crops of each (one of them resized),
as a folder: dataset, extracted with a small real backbone (a random-init HF ConvNeXt saved locally)
and a TopK SAE trained through visae's own train API.

Every latent's top lists hold distinct source photos (no two versions of one photo), and no latent
below the confidence thresholds carries a label: what does not pass is unlabelled, with its best
guess kept apart. The check is meaningful: without collapsing, crops of one photo share top lists,
and latents that fire on a few photos (counting their crops as images) pass the selectivity measure.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visae.analysis import AnalyzeConfig, FeatureDB, analyze

CROPS = ((0.0, 0.0, 0.8), (0.2, 0.2, 0.8), (0.1, 0.05, 0.85))
"""(left, top, side) of each crop, as shares of the photo's central square (what a centre-cropping
backbone sees of it); the last one is also resized."""


def _photos() -> list[Path]:
    spec = importlib.util.find_spec("foolbox")  # the package itself needs eagerpy; only its photos are used
    if spec is None:
        pytest.skip("foolbox is not installed (make setup-dev installs it with --no-deps for its photos)")
    files = sorted(Path(spec.submodule_search_locations[0], "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    return files


def _source(image_id: str) -> str:
    return re.sub(r"_crop\d$", "", Path(image_id).stem)


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from visae.extraction import ExtractConfig, extract
    from visae.sae import SAEHparams, TrainConfig, train

    root = tmp_path_factory.mktemp("photos")
    data = root / "data"
    for f in _photos():
        d = data / f.stem.split("_")[-1]  # class = the ImageNet label in the file name
        d.mkdir(parents=True, exist_ok=True)
        im = Image.open(f).convert("RGB")
        im.save(d / f"{f.stem}.png")
        W, H = im.size
        e = min(W, H)
        x0, y0 = (W - e) / 2, (H - e) / 2
        for j, (left, top, side) in enumerate(CROPS):
            box = (round(x0 + left * e), round(y0 + top * e), round(x0 + (left + side) * e), round(y0 + (top + side) * e))
            crop = im.crop(box)
            if j == 2:
                crop = crop.resize((300, 300), Image.BICUBIC)
            crop.save(d / f"{f.stem}_crop{j}.png")

    torch.manual_seed(0)
    model = root / "convnext"
    cfg = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=64)
    transformers.ConvNextModel(cfg).save_pretrained(model)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=1.0).save_pretrained(model)
    store = root / "store"
    extract(ExtractConfig(model=f"hf:{model}", layers=["encoder.stages.1"], data=f"folder:{data}", out=store,
                          dtype="fp32", device="cpu", batch_size=40))  # fmt: skip
    run = root / "run"
    train(TrainConfig(store=str(store), out=str(run), saes=[SAEHparams(arch="topk", k=8, d_sae=256)],
                      batch_size=256, training_tokens=80 * 64 * 10, device="cpu"))  # fmt: skip
    return run


def _top_lists(db: FeatureDB) -> dict[tuple[int, str], list[str]]:
    lists: dict[tuple[int, str], list[str]] = {}
    for r in db.query("SELECT latent, ranking, image_id FROM top_examples ORDER BY latent, ranking, rank"):
        lists.setdefault((r["latent"], r["ranking"]), []).append(_source(r["image_id"]))
    return lists


def test_top_lists_hold_distinct_photos_and_labels_are_earned(photo_run, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    with FeatureDB(analyze(AnalyzeConfig(run=photo_run, top=10, dedup=False, random_baseline=False))) as db:
        raw = _top_lists(db)
    # without collapsing, crops of one photo sit together in top lists: the check below can fail
    assert sum(len(v) - len(set(v)) for v in raw.values()) > 20

    with FeatureDB(analyze(AnalyzeConfig(run=photo_run, top=10, random_baseline=False, force=True))) as db:
        lists = _top_lists(db)
        assert lists and all(len(v) == len(set(v)) for v in lists.values()), "two versions of one photo in a top list"
        assert max(len(v) for v in lists.values()) == 10  # the spare candidates refill the lists
        dedup = db.meta["dedup"]
        assert dedup["images"] == 80 and dedup["images_with_duplicates"] == 80 and dedup["dropped"]["max"] > 0
        assert db.query("SELECT SUM(dups) AS n FROM top_examples WHERE ranking = 'max'")[0]["n"] == dedup["dropped"]["max"]

        m = db.meta
        latents = db.latents()
        for r in latents:
            if r["label_source"] == "class":  # a class label only where every threshold is met
                assert r["class_selectivity"] >= m["selective_index"] and r["class_selective"] == 1
                assert r["n_images"] >= m["min_images"] and r["distinct_images"] >= m["min_images"]
            if r["class_selectivity"] < m["selective_index"] or r["distinct_images"] < m["min_images"]:
                assert r["label_source"] != "class"
            if not r["label"] and r["top_class"] >= 0:  # unlabelled, and its best guess is only a guess
                assert r["guess"] and r["guess_why"]
            assert r["distinct_images"] == max(r["n_images"] - r["top_dups"], 0)
        guessed = [r for r in latents if not r["label"] and r["guess_source"] == "class"]
        assert guessed and all(r["guess_why"] for r in guessed), "top classes below the thresholds are guesses"
        # 256 latents on 20 photos: latents that fire on a few photos and their crops pass the selectivity
        # measure counting crops as images; their class stays a guess until 8 distinct photos support it
        few = [r for r in latents if r["class_selective"] and r["distinct_images"] < m["min_images"]]
        assert few and all(r["label_source"] != "class" for r in few)
        assert all("distinct images (near-duplicates counted once)" in r["guess_why"] for r in few if not r["border"])
    assert np.isfinite([r["max_act"] for r in latents]).all()
