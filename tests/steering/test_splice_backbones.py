"""The splice on real (tiny, random-init) transformers models: ConvNeXt maps channels-first and
channels-last, a ViT with CLS, a Dinov2 with registers, and a layer that returns a tuple."""

from __future__ import annotations

import pytest
import torch

from visae.errors import VisaeError
from visae.steering.edit import Edit, LatentOp
from visae.steering.splice import Splice
from visae.steering.tokens import to_seq

from steer_fixtures import random_sae

CASES = {  # name -> (backbone, layer, n_prefix)
    "convnext_map": ("convnext", "convnext.encoder.stages.1", 0),
    "convnext_channels_last": ("convnext", "convnext.encoder.stages.0.layers.0.pwconv1", 0),
    "vit_cls": ("vit", "layers.0", 1),
    "vit_classifier_cls": ("vit_classifier", "vit.layers.0", 1),
    "dinov2_registers": ("dinov2_reg", "encoder.layer.0", 5),
    "dinov2_tuple_output": ("dinov2_reg", "encoder.layer.0.attention", 5),
}


def first(output):
    if isinstance(output, torch.Tensor):
        return output
    return output.logits if hasattr(output, "logits") else output[0]


def setup(backbones, case):
    name, layer, n_prefix = CASES[case]
    bb = backbones[name]
    return bb, layer, bb.layout(layer), random_sae(bb.layout(layer).dim), n_prefix


def layer_tokens(bb, pixels_BCHW, layer, splice=None):
    """The layer's output as float32 (B, N, D) tokens, with ``splice`` attached while it runs."""
    if splice is None:
        return to_seq(bb.capture(pixels_BCHW, [layer])[layer], bb.layout(layer))
    with splice:
        return to_seq(bb.capture(pixels_BCHW, [layer])[layer], bb.layout(layer))


@pytest.mark.parametrize("case", list(CASES))
def test_an_empty_edit_reproduces_the_model(backbones, pixels_BCHW, case):
    bb, layer, _, sae, _ = setup(backbones, case)
    want = first(bb.forward(pixels_BCHW))
    for edit in (None, Edit(), Edit(ops=[LatentOp(latents=[0, 5], op="scale", value=1.0)])):
        with Splice(bb, sae, layer, edit):
            got = first(bb.forward(pixels_BCHW))
        assert (got - want).abs().max() <= 1e-5, edit


@pytest.mark.parametrize("case", list(CASES))
def test_recon_mode_changes_the_layer_by_exactly_the_sae_error(backbones, pixels_BCHW, case):
    bb, layer, layout, sae, n_prefix = setup(backbones, case)
    x_BND = layer_tokens(bb, pixels_BCHW, layer)
    got_BND = layer_tokens(bb, pixels_BCHW, layer, Splice(bb, sae, layer, mode="recon"))
    b, n, d = x_BND.shape
    recon_BND = sae.decode(sae.encode(x_BND.reshape(-1, d))).reshape(b, n, d).detach()
    assert torch.allclose(got_BND[:, n_prefix:], recon_BND[:, n_prefix:], atol=1e-5)
    assert torch.equal(got_BND[:, :n_prefix], x_BND[:, :n_prefix])  # CLS and registers kept
    assert not torch.allclose(got_BND, x_BND, atol=1e-3)  # a random SAE has an error to show
    want = first(bb.forward(pixels_BCHW))
    with Splice(bb, sae, layer, mode="recon"):
        assert not torch.allclose(first(bb.forward(pixels_BCHW)), want, atol=1e-4)  # the splice is in the forward


@pytest.mark.parametrize("case", list(CASES))
def test_zeroing_a_latent_removes_exactly_its_activation_times_its_decoder_row(backbones, pixels_BCHW, case):
    bb, layer, layout, sae, n_prefix = setup(backbones, case)
    x_BND = layer_tokens(bb, pixels_BCHW, layer)
    b, n, d = x_BND.shape
    z_BNS = sae.encode(x_BND.reshape(-1, d)).dense().reshape(b, n, -1).detach()
    share_S = (z_BNS[:, n_prefix:] > 0).float().mean(dim=(0, 1))
    i = int((share_S - 0.5).abs().argmin())  # a latent that fires on about half the patches
    z_BN = z_BNS[..., i]
    assert (z_BN[:, n_prefix:] > 0).any() and (z_BN[:, n_prefix:] == 0).any()
    got_BND = layer_tokens(bb, pixels_BCHW, layer, Splice(bb, sae, layer, Edit(ops=[LatentOp(latents=[i], op="zero")])))
    want_BND = x_BND.clone()
    want_BND[:, n_prefix:] -= z_BN[:, n_prefix:, None] * sae.W_dec[i].detach()
    assert torch.allclose(got_BND, want_BND, atol=1e-5)
    assert torch.equal(got_BND[:, :n_prefix], x_BND[:, :n_prefix])  # a patch edit: CLS, registers bit-identical
    off_BN = z_BN == 0
    assert torch.equal(got_BND[off_BN], x_BND[off_BN])  # where the latent is silent nothing moves at all


def test_a_cls_edit_touches_only_the_cls_token(backbones, pixels_BCHW):
    bb, layer, _, sae, _ = setup(backbones, "dinov2_registers")
    x_BND = layer_tokens(bb, pixels_BCHW, layer)
    edit = Edit(ops=[LatentOp(latents=[2], op="steer", value=1.5, where="cls")])
    got_BND = layer_tokens(bb, pixels_BCHW, layer, Splice(bb, sae, layer, edit))
    unit_D = sae.W_dec[2].detach() / sae.W_dec[2].detach().norm()
    assert torch.allclose(got_BND[:, 0], x_BND[:, 0] + 1.5 * unit_D, atol=1e-5)
    assert torch.equal(got_BND[:, 1:], x_BND[:, 1:])


@pytest.mark.parametrize("case", ["convnext_map", "convnext_channels_last", "vit_cls"])
def test_cell_and_mask_selections_touch_only_those_cells(backbones, pixels_BCHW, case):
    bb, layer, layout, sae, n_prefix = setup(backbones, case)
    h, w = layout.grid
    x_BND = layer_tokens(bb, pixels_BCHW, layer)
    mask_HW = torch.zeros(h, w, dtype=torch.bool)
    mask_HW[1, 2] = mask_HW[h - 1, 0] = True
    cells = LatentOp(latents=[4], op="set", value=3.0, where="cells", cells=[(1, 2), (h - 1, 0)])
    mask = LatentOp(latents=[4], op="set", value=3.0, where="mask", mask=mask_HW.tolist())
    for op in (cells, mask):
        got_BND = layer_tokens(bb, pixels_BCHW, layer, Splice(bb, sae, layer, Edit(ops=[op])))
        moved_N = (got_BND != x_BND).any(dim=2).any(dim=0)
        assert torch.equal(moved_N[n_prefix:], mask_HW.reshape(-1)), op.where
        assert not moved_N[:n_prefix].any()


@pytest.mark.parametrize("as_tuple", [False, True])
def test_the_layer_dtype_comes_back_and_a_tuple_keeps_its_tail(backbones, pixels_BCHW, as_tuple):
    bb, layer, _, sae, _ = setup(backbones, "convnext_map")
    out_BCHW = bb.capture(pixels_BCHW, [layer])[layer].to(torch.bfloat16)
    splice = Splice(bb, sae, layer, Edit(ops=[LatentOp(latents=[1], op="add", value=2.0)]))
    tail = torch.ones(3)
    got = splice._hook(bb.model.get_submodule(layer), (), (out_BCHW, tail) if as_tuple else out_BCHW)
    new_BCHW = got[0] if as_tuple else got
    assert new_BCHW.dtype == torch.bfloat16 and new_BCHW.shape == out_BCHW.shape
    assert not torch.equal(new_BCHW, out_BCHW)
    if as_tuple:
        assert isinstance(got, tuple) and len(got) == 2 and got[1] is tail


def test_hooks_are_removed_on_exit_even_on_an_exception(backbones, pixels_BCHW):
    bb, layer, _, sae, _ = setup(backbones, "vit_cls")
    module = bb.model.get_submodule(layer)
    before = len(module._forward_hooks)
    splice = Splice(bb, sae, layer, Edit(ops=[LatentOp(latents=[0], op="zero")]))
    with pytest.raises(RuntimeError, match="boom"):
        with splice:
            assert len(module._forward_hooks) == before + 1 and splice.attached
            raise RuntimeError("boom")
    assert len(module._forward_hooks) == before and not splice.attached
    splice.attach()
    splice.attach()  # attaching twice hooks once
    assert len(module._forward_hooks) == before + 1
    splice.detach()
    splice.detach()
    assert len(module._forward_hooks) == before


def test_set_edit_swaps_the_edit_of_an_attached_splice(backbones, pixels_BCHW):
    bb, layer, _, sae, _ = setup(backbones, "convnext_map")
    want = first(bb.forward(pixels_BCHW))
    with Splice(bb, sae, layer, Edit(ops=[LatentOp(latents=[0], op="add", value=50.0)])) as splice:
        moved = first(bb.forward(pixels_BCHW))
        splice.set_edit(Edit())
        back = first(bb.forward(pixels_BCHW))
    assert not torch.allclose(moved, want, atol=1e-3)
    assert (back - want).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(layer="convnext.encoder.stage.1"), "unknown layer"),
        (dict(d_in=17), "d_in=17"),
        (dict(edit=Edit(ops=[LatentOp(latents=[48], op="zero")])), "latent 48 is out of range"),
        (dict(edit=Edit(ops=[LatentOp(latents=[0], op="zero", where="mask", mask=[[True] * 8] * 8)])), "mask has shape"),
        (dict(edit=Edit(ops=[LatentOp(latents=[0], op="zero")]), mode="recon"), "takes no edit"),
        (dict(mode="fidelity"), "unknown splice mode"),
        (dict(layer=None), "no layer"),
    ],
)
def test_bad_input_is_a_one_line_error_and_hooks_nothing(backbones, kwargs, words):
    bb = backbones["convnext"]
    sae = random_sae(kwargs.pop("d_in", 16))
    kwargs.setdefault("layer", "convnext.encoder.stages.1")
    n_hooks = sum(len(m._forward_hooks) for m in bb.model.modules())
    with pytest.raises(VisaeError, match=words) as e:
        Splice(bb, sae, **kwargs).attach()
    assert "\n" not in str(e.value)
    assert sum(len(m._forward_hooks) for m in bb.model.modules()) == n_hooks


def test_the_layer_defaults_to_the_saes_own(backbones, pixels_BCHW):
    bb = backbones["vit"]
    sae = random_sae(32)
    sae.meta["layer"] = "layers.1"
    splice = Splice(bb, sae)
    assert splice.layer == "layers.1" and splice.layout.n_cls == 1
