"""encode_images: images -> the SAE's latent maps, preprocessed and captured as extraction did."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import visae
from visae.analysis.inputs import encode
from visae.errors import VisaeError


def test_maps_of_store_images_equal_the_sae_codes_of_their_stored_tokens(pipeline, folder):
    store, run = pipeline
    paths = [folder / image_id for image_id in store.images["id"][:3]]  # ids are paths within the folder
    maps = visae.encode_images(run.path, paths, batch_size=2, device="cpu")  # 2 batches
    assert maps.maps_BSHW.shape == (3, 32, 4, 4) and maps.grid == (4, 4) and maps.cls_BS is None
    sae = visae.load_sae(run.path)
    want_TS = encode(sae, store.get(np.arange(48)).float())  # the first 3 images' 16 tokens each, row-major cells
    got_TS = maps.maps_BSHW.permute(0, 2, 3, 1).reshape(48, 32)
    assert torch.allclose(got_TS, want_TS, atol=1e-4)
    assert got_TS.count_nonzero(dim=1).le(4).all()  # top-k codes


def test_pil_images_arrays_and_paths_give_the_same_maps(pipeline, folder):
    _, run = pipeline
    path = sorted(folder.rglob("*.png"))[0]
    pil = Image.open(path)
    arr = np.asarray(pil.convert("RGB"))
    maps = visae.encode_images(run.path, [path, pil, arr], device="cpu").maps_BSHW
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[0], maps[2])
    for one in (str(path), path, pil, arr):  # one image, not a sequence (a string is not a list of letters)
        assert torch.allclose(visae.encode_images(run.path, one, device="cpu").maps_BSHW, maps[:1], atol=1e-5)


def test_top_lists_an_images_strongest_latents_strongest_first(pipeline, folder):
    _, run = pipeline
    maps = visae.encode_images(run.path, sorted(folder.rglob("*.png"))[:2], device="cpu")
    top = maps.top(1, 3)
    peak_S = maps.maps_BSHW[1].amax(dim=(1, 2))
    assert [s for s, _ in top] == peak_S.topk(3).indices.tolist()
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True) and top[0][1] == pytest.approx(float(peak_S.max()))
    with pytest.raises(VisaeError, match="out of range"):
        maps.top(2)


def test_bad_images_are_refused_in_one_line(pipeline, tmp_path):
    _, run = pipeline
    with pytest.raises(VisaeError, match="not HWC uint8"):
        visae.encode_images(run.path, [np.zeros((4, 4, 3), np.float32)], device="cpu")
    with pytest.raises(VisaeError, match="cannot read image"):
        visae.encode_images(run.path, [tmp_path / "missing.png"], device="cpu")
    with pytest.raises(VisaeError, match="no images given"):
        visae.encode_images(run.path, [], device="cpu")



def test_vit_sequences_give_a_patch_grid_and_cls_codes_and_pooled_layers_one_cell():
    from visae.backbones.tokens import TokenLayout
    from visae.encode import _codes

    out_BND = torch.randn(2, 1 + 6, 5)  # CLS + a 2x3 patch grid of 5-d tokens; the "SAE" is the identity
    maps_BSHW, cls_BS = _codes(out_BND, TokenLayout("sequence", 5, (2, 3), n_cls=1), lambda acts_TD: acts_TD)
    assert maps_BSHW.shape == (2, 5, 2, 3) and torch.equal(maps_BSHW[1, :, 1, 2], out_BND[1, 1 + 1 * 3 + 2])
    assert torch.equal(cls_BS, out_BND[:, 0])
    pooled_BD = torch.randn(2, 5)
    maps_BSHW, cls_BS = _codes(pooled_BD, TokenLayout("pooled", 5, None), lambda acts_TD: acts_TD)
    assert maps_BSHW.shape == (2, 5, 1, 1) and torch.equal(maps_BSHW[:, :, 0, 0], pooled_BD) and cls_BS is None
