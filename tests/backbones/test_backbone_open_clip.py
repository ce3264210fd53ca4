"""open_clip:... on a tiny OpenCLIP model saved as a local-dir (config + weights), no download.

open_clip imports torchvision; like the timm tests these run against the tests-only
stand-in (torchvision_standin/README.md). visae builds the model with ``create_model`` and
reads preprocessing from the tower's ``preprocess_cfg``, so torchvision is never called.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from visae.backbones import load_backbone
from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError

pytestmark = pytest.mark.usefixtures("standin_torchvision")

TINY = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "interpolation": "bilinear", "resize_mode": "shortest"},
}


@pytest.fixture(scope="module")
def open_clip_dir(tmp_path_factory):
    for name in ("open_clip", "ftfy"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (make setup-dev installs open_clip_torch with --no-deps, ftfy with [dev])")
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("open_clip_tiny")
    (folder / "open_clip_config.json").write_text(json.dumps(TINY))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder, {k: v.clone() for k, v in model.visual.state_dict().items()}


def test_local_dir_loads_the_vision_tower_with_its_weights(open_clip_dir):
    folder, visual_sd = open_clip_dir
    bb = load_backbone(f"open_clip:local-dir:{folder}")
    assert bb.family == "open_clip" and not hasattr(bb.model, "token_embedding")
    for key, value in visual_sd.items():
        assert torch.equal(bb.model.state_dict()[key], value), key
    pp = bb.preprocess
    assert (pp.size, pp.mean, pp.std, pp.resample) == (32, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bilinear")
    assert (bb.n_cls, bb.patch_size) == (1, 8)
    assert bb.layout("conv1") == TokenLayout("spatial", 32, (4, 4))
    assert bb.layout("transformer.resblocks.1") == TokenLayout("sequence", 32, (4, 4), n_cls=1)
    assert bb.layout("ln_post") == TokenLayout("sequence", 32, (4, 4), n_cls=1)  # normalises all tokens, then pools
    x_BCHW = torch.randn(2, 3, 32, 32)
    out = bb.capture(x_BCHW, ["transformer.resblocks.1"])["transformer.resblocks.1"]
    assert out.shape == (2, 17, 32)
    assert bb.forward(x_BCHW).shape == (2, 16)  # the tower's own output: the image embedding


def test_open_clip_errors_say_what_to_do(open_clip_dir, tmp_path):
    folder, _ = open_clip_dir
    bare = tmp_path / "config_only"
    bare.mkdir()
    (bare / "open_clip_config.json").write_text((folder / "open_clip_config.json").read_text())
    with pytest.raises(VisaeError, match="no weights .* pass --random-init"):
        load_backbone(f"open_clip:local-dir:{bare}")
    assert load_backbone(f"open_clip:local-dir:{bare}", random_init=True).layout("conv1").grid == (4, 4)
    with pytest.raises(VisaeError, match="open_clip has no model 'ViT-B-23'; did you mean 'ViT-B-32'"):
        load_backbone("open_clip:ViT-B-23:openai")
    with pytest.raises(VisaeError, match=r"open_clip:ViT-B-32 names no weights; write open_clip:ViT-B-32:TAG \(tags: .*openai"):
        load_backbone("open_clip:ViT-B-32")
