"""Optional backbone packages: clear errors when missing or broken; torchvision where it imports."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from visae.backbones import load_backbone
from visae.backbones.optional import optional_import
from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError

TOPS = ("torchvision", "timm", "open_clip")


@pytest.fixture
def clean_optional_modules(monkeypatch):
    """Hide already-imported optional packages for one test, and forget what it imported."""
    before = {k: v for k, v in sys.modules.items() if k.split(".")[0] in TOPS}
    for k in before:
        del sys.modules[k]
    yield
    for k in [k for k in sys.modules if k.split(".")[0] in TOPS]:
        del sys.modules[k]
    sys.modules.update(before)


@pytest.fixture
def broken_torchvision(tmp_path, monkeypatch, clean_optional_modules):
    """A torchvision that fails like the CUDA build does on CPU torch."""
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_missing_package_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # what the import system does for an absent package
    with pytest.raises(VisaeError, match=r"^torchvision is not installed; pip install 'visae\[torchvision\]'$"):
        load_backbone("torchvision:resnet18")
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(VisaeError, match=r"open_clip is not installed; pip install 'visae\[open_clip\]'"):
        load_backbone("open_clip:ViT-B-32:openai")


def test_a_broken_torchvision_is_named_as_the_cause(broken_torchvision):
    with pytest.raises(VisaeError) as e:
        optional_import("torchvision", extra="torchvision")
    msg = str(e.value)
    assert msg.startswith("torchvision is installed but fails to import (RuntimeError: operator torchvision::nms does not exist)")
    assert f"the build made for this torch ({torch.__version__})" in msg and "hf: backbone" in msg
    if importlib.util.find_spec("timm") is not None:
        with pytest.raises(VisaeError, match=r"^timm is installed but fails to import \(RuntimeError: operator torchvision::nms"):
            load_backbone("timm:resnet18")


def test_torchvision_models_where_torchvision_imports():
    try:
        importlib.import_module("torchvision")
    except Exception as e:  # the reason is the skip message
        pytest.skip(f"torchvision cannot be imported here ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    bb = load_backbone("torchvision:resnet18", random_init=True)
    assert bb.layout("layer4") == TokenLayout("spatial", 512, (7, 7))
    assert bb.preprocess.size == 224 and abs(bb.preprocess.crop_pct - 224 / 256) < 1e-6
    with pytest.raises(VisaeError, match="torchvision has no model 'resnet1'"):
        load_backbone("torchvision:resnet1")
