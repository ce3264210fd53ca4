"""The extract stage: tokens land in the store exactly, several layers share a forward, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from extract_fakes import FakeBackbone, make_folder

import visae
from visae.backbones.tokens import to_tokens
from visae.data.base import open_dataset
from visae.errors import VisaeError
from visae.extraction import ExtractConfig, extract
from visae.store import verify


def cfg(folder, out, **kw) -> ExtractConfig:
    base = dict(model="fake:tiny", layers=["conv2"], data=f"folder:{folder}", out=out, batch_size=4, shard_tokens=24)
    return ExtractConfig.build(**{**base, **kw})


def expected_tokens(bb, folder, layer, select="patch", dtype=torch.bfloat16):
    """Every readable image through the fake, one at a time."""
    split = open_dataset(f"folder:{folder}").split("all")
    rows = []
    for i in range(len(split)):
        try:
            pixels = bb.preprocess(split[i].image_HWC)[None]
        except Exception:
            continue
        tokens_TD, _ = to_tokens(bb.capture(pixels, [layer])[layer], bb.layout(layer), select)
        rows.append(tokens_TD.to(dtype))
    return torch.cat(rows)


def test_single_layer_store_holds_the_models_tokens(folder, tmp_path):
    bb = FakeBackbone()
    store = extract(cfg(folder, tmp_path / "s"), backbone=bb)
    assert len(store) == 19 * 16 and store.d == 5 and store.meta.complete
    want = expected_tokens(FakeBackbone(), folder, "conv2")
    assert torch.allclose(store.get(np.arange(len(store)), torch.bfloat16).float(), want.float(), atol=1e-2, rtol=1e-2)
    assert np.array_equal(store.images["image"], np.arange(19))  # split index 19 is the broken file
    assert [s.image for s in store.meta.skipped] == [19] and "b/img_009.png" == store.meta.skipped[0].id
    assert np.array_equal(store.index["y"][:16], np.repeat(np.arange(4), 4))
    assert np.array_equal(store.index["label"], np.repeat([0] * 10 + [1] * 9, 16))
    m = store.meta
    assert m.layout["grid"] == [4, 4] and m.preprocess["size"] == 16 and m.split == "all" and m.backbone == "fake:tiny"
    assert verify(store.path).ok


def test_several_layers_share_one_forward_pass(folder, tmp_path):
    bb = FakeBackbone()
    stores = extract(cfg(folder, tmp_path / "m", layers=["conv1", "seq"], tokens="all", shard_tokens=256), backbone=bb)
    assert bb.calls == 5  # 20 images / batch 4, the broken one left out of the last batch
    assert set(stores) == {"conv1", "seq"}
    assert stores["conv1"].path == tmp_path / "m" / "conv1" and len(stores["conv1"]) == 19 * 64
    seq = stores["seq"]
    assert len(seq) == 19 * 17 and np.array_equal(seq.index["kind"][:17], [1] + [0] * 16)
    assert seq.index["y"][0] == -1
    want = expected_tokens(FakeBackbone(), folder, "seq", select="all")
    assert torch.allclose(seq.get(np.arange(len(seq))), want.float(), atol=2e-2, rtol=2e-2)


def test_a_finished_store_is_not_recomputed(folder, tmp_path):
    extract(cfg(folder, tmp_path / "s"), backbone=FakeBackbone())
    bb = FakeBackbone()
    store = extract(cfg(folder, tmp_path / "s"), backbone=bb)
    assert bb.calls == 0 and store.meta.complete


def test_changed_settings_are_refused(folder, tmp_path):
    extract(cfg(folder, tmp_path / "s", max_images=8), backbone=FakeBackbone())
    with pytest.raises(VisaeError, match="other settings.*dtype") as e:
        extract(cfg(folder, tmp_path / "s", max_images=8, dtype="fp32"), backbone=FakeBackbone())
    assert "--force" in str(e.value)
    store = extract(cfg(folder, tmp_path / "s", max_images=8, dtype="fp32", force=True), backbone=FakeBackbone())
    assert store.meta.dtype == "fp32"


def test_nan_activations_name_the_images(tmp_path):
    data = make_folder(tmp_path / "imgs", n_per_class=4, white=2)
    with pytest.raises(VisaeError, match="NaN/Inf") as e:
        extract(cfg(data, tmp_path / "s"), backbone=FakeBackbone())
    assert "a/img_000.png, a/img_001.png" in str(e.value) and "--skip-nonfinite" in str(e.value)
    store = extract(cfg(data, tmp_path / "s", skip_nonfinite=True), backbone=FakeBackbone())
    assert [s.id for s in store.meta.skipped] == ["a/img_000.png", "a/img_001.png"]
    assert "non-finite" in store.meta.skipped[0].reason
    assert np.array_equal(store.images["image"], np.arange(2, 8)) and torch.isfinite(store.get(slice(None))).all()


def test_bad_layer_and_conflicting_flags(folder, tmp_path):
    with pytest.raises(VisaeError, match="did you mean 'conv2'"):
        extract(cfg(folder, tmp_path / "s", layers=["conv_2"]), backbone=FakeBackbone())
    with pytest.raises(VisaeError, match="contradict"):
        cfg(folder, tmp_path / "s", resume=True, force=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(VisaeError, match="already holds other files"):
        extract(cfg(folder, tmp_path / "other"), backbone=FakeBackbone())


def test_package_is_callable_with_keywords(folder, tmp_path):
    store = visae.extract(model="fake:tiny", layers=["conv2"], data=f"folder:{folder}", out=tmp_path / "s",
                          max_images=4, backbone=FakeBackbone())  # fmt: skip
    assert len(store) == 4 * 16 and isinstance(store, visae.Store)


def test_max_images_takes_a_seeded_random_subset_of_a_class_sorted_folder(tmp_path):
    data = make_folder(tmp_path / "imgs", n_per_class=12, classes=("a", "b", "c", "d"))  # 48 images, class after class
    store = extract(cfg(data, tmp_path / "s", max_images=12, shard_tokens=40), backbone=FakeBackbone())
    images = store.images["image"]
    assert len(images) == 12 and list(images) == sorted(images) and images[-1] > 12, "not the first 12"
    assert len(set(store.images["label"].tolist())) >= 3, "classes from across the folder"
    again = extract(cfg(data, tmp_path / "t", max_images=12, shard_tokens=40), backbone=FakeBackbone())
    assert np.array_equal(again.images["image"], images), "seeded"
    other = extract(cfg(data, tmp_path / "u", max_images=12, seed=1, shard_tokens=40), backbone=FakeBackbone())
    assert not np.array_equal(other.images["image"], images)
    # a kill part way (third forward pass) and a resume give the same store as one run
    with pytest.raises(RuntimeError, match="injected"):
        extract(cfg(data, tmp_path / "k", max_images=12, shard_tokens=40), backbone=FakeBackbone(fail_after=2))
    resumed = extract(cfg(data, tmp_path / "k", max_images=12, shard_tokens=40), backbone=FakeBackbone())
    assert np.array_equal(resumed.images["image"], images)
    assert torch.equal(resumed.get(slice(None)), store.get(slice(None)))


def test_local_paths_are_recorded_absolute_and_old_relative_stores_still_resume(folder, tmp_path, monkeypatch):
    """Later stages (steer, eval, serve) reopen the backbone and the images from the store's metadata, possibly from
    another directory: a relative local path is recorded absolute; hub ids and names as typed."""
    import json

    monkeypatch.chdir(folder.parent)
    rel = f"folder:{folder.name}"
    store = extract(cfg(folder.name, tmp_path / "s"), backbone=FakeBackbone())
    assert ExtractConfig.build(model="hf:org/name", layers=["x"], data=rel, out="o").data == f"folder:{folder.resolve()}"
    assert ExtractConfig.build(model="hf:org/name", layers=["x"], data="mnist5k", out="o").model == "hf:org/name"
    assert store.meta.dataset == f"folder:{folder.resolve()}" and store.meta.config["data"] == store.meta.dataset
    monkeypatch.chdir(tmp_path)
    assert len(open_dataset(store.meta.dataset).split("all")) == 20  # readable from anywhere
    # a store made before paths were recorded absolute (its config says the relative spec) is still the same settings
    meta = json.loads((tmp_path / "s" / "metadata.json").read_text())
    meta["config"]["data"] = rel
    (tmp_path / "s" / "metadata.json").write_text(json.dumps(meta))
    monkeypatch.chdir(folder.parent)
    again = extract(cfg(folder.name, tmp_path / "s", data=rel), backbone=FakeBackbone())
    assert again.meta.complete and len(again) == len(store)


def test_a_folder_of_unreadable_images_leaves_nothing_and_a_fixed_one_extracts_without_force(tmp_path):
    """Every image broken: one-line refusal and no store left behind, so the rerun after fixing the files needs no
    --force (an unfinished store of the broken files would be 'extracted with other settings')."""
    broken = tmp_path / "imgs"
    for c in ("a", "b"):
        (broken / c).mkdir(parents=True)
        for k in range(3):
            (broken / c / f"img_{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(VisaeError, match="none of the 6 images .* could be stored.*; nothing was written"):
        extract(cfg(broken, tmp_path / "s"), backbone=FakeBackbone())
    assert not (tmp_path / "s" / "metadata.json").exists()
    make_folder(broken, n_per_class=3)  # the files fixed, the same spec
    store = extract(cfg(broken, tmp_path / "s"), backbone=FakeBackbone())
    assert store.meta.complete and store.n_images == 6
