"""SAELens files round-trip exactly; other libraries' checkpoints load as the same function."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from visae.errors import VisaeError
from visae.sae import ARCHS, SAESpec, create_sae
from visae.sae.importers import load_sae
from visae.sae.saelens import save_saelens

ALL = ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"]


def _trained_like(arch):
    torch.manual_seed(0)
    sae = create_sae(SAESpec(arch=arch, d_in=10, d_sae=40, k=4 if ARCHS.get(arch).needs_k else None))
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if hasattr(sae, "threshold") and not isinstance(type(sae).__dict__.get("threshold"), property):
            sae.threshold.fill_(0.2)
        if arch == "jumprelu":  # per-latent thresholds in the range of the codes, far from threshold_init
            sae.log_threshold.copy_(torch.rand(40).mul(1.5).add(0.1).log())
    sae.meta = {"backbone": "hf:toy", "layer": "blocks.3", "dataset": "synth:toy",
                "layout": {"kind": "sequence", "dim": 10, "grid": [4, 4]}}
    return sae.eval()


@pytest.mark.parametrize("arch", ALL)
def test_saelens_round_trip_is_exact(tmp_path, arch):
    sae = _trained_like(arch)
    save_saelens(sae, tmp_path / "f")
    cfg = json.loads((tmp_path / "f" / "cfg.json").read_text())
    assert cfg["d_in"] == 10 and cfg["d_sae"] == 40 and cfg["apply_b_dec_to_input"] is True
    assert cfg["normalize_activations"] == "none" and cfg["architecture"] == sae.saelens_arch
    assert cfg["visae"]["arch"] == arch and cfg["meta"]["hook_name"] == "blocks.3"
    md = cfg["metadata"]  # SAELens 6's names for the same facts
    assert md["model_name"] == "hf:toy" and md["hook_name"] == md["hf_hook_name"] == "blocks.3"
    assert md["dataset_path"] == "synth:toy" and md["context_size"] == 16 and md["sae_lens_version"].startswith("6.")
    w = load_file(str(tmp_path / "f" / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (10, 40) and w["W_dec"].shape == (40, 10)
    assert ("threshold" in w) == (sae.saelens_arch == "jumprelu")
    back = load_sae(tmp_path / "f").eval()
    assert back.spec == sae.spec and back.meta["layer"] == "blocks.3"
    x = torch.randn(16, 10)
    assert torch.equal(back.encode(x).dense(), sae.encode(x).dense())
    assert torch.equal(back(x).recon_BD, sae(x).recon_BD)


SAELENS_ARCH = {"relu": "StandardSAE", "topk": "TopKSAE", "batchtopk": "JumpReLUSAE", "jumprelu": "JumpReLUSAE",
                "matryoshka": "JumpReLUSAE"}


def test_saelens_library_loads_visae_files_with_names_and_same_outputs(tmp_path):
    """The real SAELens (6.x) reads every architecture visae saves: names kept, same encode/decode."""
    pytest.importorskip("sae_lens", reason="sae-lens is not installed (make setup-dev installs it with --no-deps)")
    import sae_lens
    from sae_lens import SAE as LensSAE

    assert sae_lens.__version__.startswith("6.")
    x = torch.randn(32, 10, generator=torch.Generator().manual_seed(5))
    for arch in ALL:
        sae = _trained_like(arch)
        save_saelens(sae, tmp_path / arch)
        lens = LensSAE.load_from_disk(tmp_path / arch)
        assert type(lens).__name__ == SAELENS_ARCH[arch], arch
        md = lens.cfg.metadata
        assert (md.model_name, md.hook_name, md.dataset_path) == ("hf:toy", "blocks.3", "synth:toy"), arch
        assert md.context_size == 16 and md.sae_lens_training_version is None
        with torch.no_grad():
            z_lens = lens.encode(x)
            z_lens = z_lens.to_dense() if z_lens.is_sparse else z_lens
            z = sae.encode(x).dense()
            torch.testing.assert_close(z_lens, z, rtol=1e-6, atol=1e-6)
            assert int((z_lens != 0).sum()) > 0, arch  # the comparison is not vacuous
            torch.testing.assert_close(lens.decode(z_lens), sae.decode(sae.encode(x)), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(lens(x), sae(x).recon_BD, rtol=1e-5, atol=1e-5)
        # and back: a folder SAELens itself writes loads in visae as the same function, names kept
        lens.save_model(tmp_path / f"{arch}-lens")
        back = load_sae(tmp_path / f"{arch}-lens").eval()
        assert (back.meta["backbone"], back.meta["layer"], back.meta["dataset"]) == ("hf:toy", "blocks.3", "synth:toy")
        torch.testing.assert_close(back(x).recon_BD, sae(x).recon_BD, rtol=1e-5, atol=1e-5)


def test_foreign_saelens_folder_without_visae_fields(tmp_path):
    torch.manual_seed(1)
    D, S = 8, 24
    t = {"W_enc": torch.randn(D, S), "b_enc": torch.randn(S), "W_dec": torch.randn(S, D), "b_dec": torch.randn(D),
         "threshold": torch.rand(S)}
    (tmp_path / "j").mkdir()
    save_file(t, str(tmp_path / "j" / "sae_weights.safetensors"))
    cfg = {"architecture": "jumprelu", "d_in": D, "d_sae": S, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "meta": {"hook_name": "blocks.5"}}
    (tmp_path / "j" / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(tmp_path / "j")
    x = torch.randn(5, D)
    pre = x @ t["W_enc"] + t["b_enc"]  # SAELens JumpReLU without b_dec on the input
    want = torch.relu(pre) * (pre > t["threshold"])
    torch.testing.assert_close(sae.encode(x).dense(), want, atol=1e-5, rtol=1e-5)
    assert sae.meta["layer"] == "blocks.5"
    cfg["normalize_activations"] = "layer_norm"
    (tmp_path / "j" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(VisaeError, match="normalises activations"):
        load_sae(tmp_path / "j")


def test_sparsify_folder(tmp_path):
    torch.manual_seed(2)
    D, S, k = 8, 32, 3
    t = {"encoder.weight": torch.randn(S, D), "encoder.bias": torch.randn(S), "W_dec": torch.randn(S, D), "b_dec": torch.randn(D)}
    save_file(t, str(tmp_path / "sae.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"expansion_factor": 4, "normalize_decoder": True, "num_latents": 0, "k": k, "multi_topk": False, "d_in": D}))
    sae = load_sae(tmp_path)
    x = torch.randn(6, D)
    # sparsify: top-k of ReLU(encoder(x - b_dec)), decode with W_dec + b_dec
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    top = pre.topk(k)
    want = torch.zeros(6, S).scatter(1, top.indices, top.values) @ t["W_dec"] + t["b_dec"]
    torch.testing.assert_close(sae(x).recon_BD, want, atol=1e-5, rtol=1e-5)


def test_dictionary_learning_relu_topk_and_jumprelu(tmp_path):
    torch.manual_seed(3)
    D, S = 8, 32
    x = torch.randn(6, D)
    # AutoEncoder: relu(encoder(x - bias)) -> decoder(f) + bias
    relu = {"encoder.weight": torch.randn(S, D), "encoder.bias": torch.randn(S), "decoder.weight": torch.randn(D, S), "bias": torch.randn(D)}
    torch.save(relu, tmp_path / "ae.pt")
    f = torch.relu((x - relu["bias"]) @ relu["encoder.weight"].T + relu["encoder.bias"])
    torch.testing.assert_close(load_sae(tmp_path / "ae.pt")(x).recon_BD, f @ relu["decoder.weight"].T + relu["bias"], atol=1e-5, rtol=1e-5)
    # AutoEncoderTopK: same Linear layout, b_dec and k
    (tmp_path / "tk").mkdir()
    topk = {"encoder.weight": relu["encoder.weight"], "encoder.bias": relu["encoder.bias"], "decoder.weight": relu["decoder.weight"],
            "b_dec": relu["bias"], "k": torch.tensor(3)}
    torch.save(topk, tmp_path / "tk" / "ae.pt")
    (tmp_path / "tk" / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoderTopK", "k": 3}}))
    sae = load_sae(tmp_path / "tk")
    assert sae.spec.arch == "topk" and sae.spec.k == 3
    top = f.topk(3)
    assert torch.equal(sae.encode(x).dense().ne(0), torch.zeros(6, S).scatter(1, top.indices, 1.0).bool())
    # JumpReluAutoEncoder: W_enc layout, no b_dec on the input
    jr = {"W_enc": torch.randn(D, S), "b_enc": torch.randn(S), "W_dec": torch.randn(S, D), "b_dec": torch.randn(D), "threshold": torch.rand(S)}
    (tmp_path / "jr").mkdir()
    torch.save(jr, tmp_path / "jr" / "ae.pt")
    sae = load_sae(tmp_path / "jr")
    pre = x @ jr["W_enc"] + jr["b_enc"]
    z = torch.relu(pre * (pre > jr["threshold"]))
    torch.testing.assert_close(sae(x).recon_BD, z @ jr["W_dec"] + jr["b_dec"], atol=1e-4, rtol=1e-4)


def test_load_sae_explains_unknown_paths(tmp_path):
    with pytest.raises(VisaeError, match="does not exist"):
        load_sae(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisaeError, match="holds no SAE"):
        load_sae(tmp_path / "empty")
