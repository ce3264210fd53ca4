"""The random-init options of the default ConvNeXt: weight init and layer scale, saved in its config."""

from __future__ import annotations

import torch

from visae.classifier import ClassifierConfig
from visae.classifier.model import build_random

SMALL = dict(data="x", out="y", patch_size=4, hidden_sizes=(8, 16), depths=(1, 1))


def _conv_std(model) -> float:
    return float(model.convnext.embeddings.patch_embeddings.weight.detach().std())


def test_torch_init_is_kaiming_uniform_and_hf_init_is_std_002():
    torch_model = build_random(ClassifierConfig(**SMALL, weight_init="torch"), ["a", "b"], 32)
    hf_model = build_random(ClassifierConfig(**SMALL, weight_init="hf"), ["a", "b"], 32)
    fan_in = 3 * 4 * 4
    assert abs(_conv_std(torch_model) - (1 / fan_in) ** 0.5 / 3**0.5) < 0.03  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert abs(_conv_std(hf_model) - 0.02) < 0.005


def test_layer_scale_off_by_default_and_configurable():
    off = build_random(ClassifierConfig(**SMALL), ["a", "b"], 32)
    assert off.config.layer_scale_init_value == 0.0
    assert all(layer.layer_scale_parameter is None for s in off.convnext.encoder.stages for layer in s.layers)
    on = build_random(ClassifierConfig(**SMALL, layer_scale_init=0.5), ["a", "b"], 32)
    gammas = [layer.layer_scale_parameter for s in on.convnext.encoder.stages for layer in s.layers]
    assert all(torch.allclose(g, torch.full_like(g, 0.5)) for g in gammas)


def test_default_model_keeps_an_8x8_final_map_at_64px():
    cfg = ClassifierConfig(data="x", out="y")
    model = build_random(cfg, [str(i) for i in range(22)], 64).eval()
    with torch.no_grad():
        fmap_BCHW = model.convnext(pixel_values=torch.zeros(1, 3, 64, 64)).last_hidden_state
    assert fmap_BCHW.shape[-2:] == (8, 8)
