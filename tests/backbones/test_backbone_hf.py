"""hf:PATH on tiny random-init transformers models saved with save_pretrained."""

from __future__ import annotations

import pytest
import torch

from visae.backbones import load_backbone, to_tokens
from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError

# model -> (layer whose output is hidden_states[0], template of block i's output = hidden_states[i + 1])
HIDDEN = {
    "vit": ("embeddings", "layers.{}"),
    "dinov2_reg": ("embeddings", "encoder.layer.{}"),
    "clip_full": ("pre_layrnorm", "encoder.layers.{}"),
    "siglip_full": ("embeddings", "encoder.layers.{}"),
    "convnext_cls": ("convnext.embeddings", "convnext.encoder.stages.{}"),
}


@pytest.mark.parametrize("name", list(HIDDEN))
def test_capture_equals_output_hidden_states(hf_models, name):
    bb = load_backbone(f"hf:{hf_models[name]}")
    size = bb.preprocess.size
    x_BCHW = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    first, block = HIDDEN[name]
    n_blocks = 4 if name.startswith("convnext") else 2
    names = [first] + [block.format(i) for i in range(n_blocks)]
    got = bb.capture(x_BCHW, names)
    with torch.no_grad():
        hidden = bb.model(pixel_values=x_BCHW, output_hidden_states=True).hidden_states
    assert len(hidden) == n_blocks + 1
    for i, layer in enumerate(names):
        assert torch.allclose(got[layer], hidden[i], atol=1e-6), layer


@pytest.mark.parametrize(
    "name, layer, layout",
    [
        ("vit", "layers.1", TokenLayout("sequence", 32, (4, 4), n_cls=1)),
        ("vit", "embeddings.patch_embeddings", TokenLayout("sequence", 32, (4, 4))),
        ("dinov2_reg", "encoder.layer.0.mlp.fc1", TokenLayout("sequence", 128, (4, 4), n_cls=1, n_registers=4)),
        ("clip_full", "encoder.layers.1", TokenLayout("sequence", 32, (4, 4), n_cls=1)),
        ("clip_vision", "post_layernorm", TokenLayout("pooled", 32, None)),
        ("siglip_full", "encoder.layers.1", TokenLayout("sequence", 32, (4, 4))),  # SigLIP has no CLS token
        ("siglip_full", "head", TokenLayout("pooled", 32, None)),
        ("convnext_cls", "convnext.encoder.stages.1", TokenLayout("spatial", 16, (8, 8))),
        ("convnext_cls", "convnext.encoder.stages.1.layers.0.pwconv1", TokenLayout("spatial", 64, (8, 8), channels_last=True)),
        ("convnext_cls", "classifier", TokenLayout("pooled", 3, None)),
    ],
)
def test_layout_is_inferred_from_the_model(hf_models, name, layer, layout):
    bb = load_backbone(f"hf:{hf_models[name]}")
    assert bb.layout(layer) == layout
    info = {i.name: i for i in bb.layers()}[layer]
    assert info.layout == layout and info.shape == layout.shape()


def test_registers_and_cls_are_selectable(hf_models):
    bb = load_backbone(f"hf:{hf_models['dinov2_reg']}")
    out = bb.capture(torch.randn(3, 3, 32, 32), ["encoder.layer.1"])["encoder.layer.1"]
    layout = bb.layout("encoder.layer.1")
    counts = {select: len(to_tokens(out, layout, select)[1]) for select in ("patch", "cls", "registers", "all")}
    assert counts == {"patch": 3 * 16, "cls": 3, "registers": 3 * 4, "all": 3 * 21}
    cls_TD, _ = to_tokens(out, layout, "cls")
    assert torch.equal(cls_TD, out[:, 0])


def test_full_clip_checkpoint_loads_only_its_vision_tower(hf_models, transformers_quiet):
    bb = load_backbone(f"hf:{hf_models['clip_full']}")
    assert not any(name.startswith("text_model") for name, _ in bb.model.named_modules())
    full = transformers_quiet.CLIPModel.from_pretrained(hf_models["clip_full"])
    for key, value in full.vision_model.state_dict().items():
        assert torch.equal(bb.model.state_dict()[key], value), key
    assert bb.n_cls == 1 and bb.patch_size == 8


def test_preprocessing_comes_from_the_image_processor(hf_models):
    dino = load_backbone(f"hf:{hf_models['dinov2_reg']}").preprocess
    assert (dino.size, round(dino.crop_pct, 4), dino.resample) == (32, round(32 / 36, 4), "bicubic")
    convnext = load_backbone(f"hf:{hf_models['convnext_cls']}").preprocess
    assert (convnext.size, convnext.crop_pct, convnext.mean, convnext.std) == (64, 0.875, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    vit = load_backbone(f"hf:{hf_models['vit']}", preprocess_overrides={"size": 48}).preprocess
    assert (vit.size, vit.crop_pct, vit.mean, vit.resample) == (48, 1.0, (0.5, 0.5, 0.5), "bilinear")


def test_another_input_size_interpolates_position_embeddings(hf_models):
    bb = load_backbone(f"hf:{hf_models['vit']}", preprocess_overrides={"size": 48})
    assert bb.layout("layers.1") == TokenLayout("sequence", 32, (6, 6), n_cls=1)
    out = bb.capture(torch.randn(1, 3, 48, 48), ["layers.1"])["layers.1"]
    assert out.shape == (1, 37, 32)


def test_classifier_keeps_its_class_names(hf_models):
    bb = load_backbone(f"hf:{hf_models['convnext_cls']}")
    assert bb.class_names == ["cessna", "boeing", "airbus"]
    assert bb.forward(torch.randn(2, 3, 64, 64)).logits.shape == (2, 3)


def test_wrong_layer_gets_a_did_you_mean(hf_models):
    bb = load_backbone(f"hf:{hf_models['convnext_cls']}")
    with pytest.raises(VisaeError) as e:
        bb.capture(torch.randn(1, 3, 64, 64), ["stage.3"])
    assert str(e.value).startswith("unknown layer 'stage.3'; did you mean 'convnext.encoder.stages.3'")
    assert "visae layers" in str(e.value)


def test_random_init_builds_from_a_local_config_without_weights(hf_models, tmp_path):
    cfg_only = tmp_path / "vit_config_only"
    cfg_only.mkdir()
    (cfg_only / "config.json").write_text((hf_models["vit"] / "config.json").read_text())
    with pytest.raises(VisaeError, match="no local weights found.*--random-init"):
        load_backbone(f"hf:{cfg_only}")
    bb = load_backbone(f"hf:{cfg_only}", random_init=True)
    assert bb.layout("layers.0") == TokenLayout("sequence", 32, (4, 4), n_cls=1)


def test_missing_models_fail_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VisaeError, match=r"no local weights found for hf:nobody/no-such-model .*--random-init"):
        load_backbone("hf:nobody/no-such-model")
    with pytest.raises(VisaeError, match="no such model directory"):
        load_backbone(f"hf:{tmp_path / 'absent'}")
    with pytest.raises(VisaeError, match="has no config.json"):
        load_backbone(f"hf:{tmp_path}")
    with pytest.raises(VisaeError, match="has no scheme; write hf:nobody/model"):
        load_backbone("nobody/model")
    with pytest.raises(VisaeError, match="unknown backbone scheme 'hff'; did you mean 'hf'"):
        load_backbone("hff:nobody/model")


def test_random_init_from_a_model_type_name_for_any_transformers_vision_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = load_backbone("hf:mobilenet_v2", random_init=True)  # not a visae-specific family: AutoModel, shapes decide
    assert bb.preprocess.size == 224  # from its config (no image processor without a checkpoint)
    bb.preprocess = bb.preprocess.model_copy(update={"size": 64})  # a cheaper dummy forward
    layers = {info.name: info.layout for info in bb.layers()}
    assert layers["conv_1x1"] == TokenLayout("spatial", 1280, (2, 2))
    assert layers["pooler"] == TokenLayout("spatial", 1280, (1, 1))
