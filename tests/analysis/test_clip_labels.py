"""CLIP text-tower labels through a real (tiny, random-init, saved locally) HF CLIPModel."""

from __future__ import annotations

import pytest
import torch

from visae.analysis.labels import PROMPT, clip_labels, hf_clip_text_embedder, load_hf_clip

transformers = pytest.importorskip("transformers")


def byte_level_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (CLIP's BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip")
    chars = byte_level_alphabet()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tok = transformers.CLIPTokenizer(vocab=vocab, merges=[])  # characters only: no merges needed
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=24,
    )
    transformers.CLIPModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_decoder_directions_map_to_their_phrases(tiny_clip):
    loaded = load_hf_clip(f"hf:{tiny_clip}")
    assert not isinstance(loaded, str), loaded
    model, tok = loaded
    phrases = ["wing", "tail", "engine", "cockpit"]
    with torch.no_grad():
        text_PE = hf_clip_text_embedder(model, tok)([PROMPT.format(phrase=p) for p in phrases])
        W_ED = model.visual_projection.weight  # (E, D): image_embeds = pooled_D @ W_ED.T
        W_dec_SD = text_PE[[2, 0, 3]] @ torch.linalg.pinv(W_ED.T)  # directions that project onto those texts
    out = clip_labels(f"hf:{tiny_clip}", "vision_model.post_layernorm", "pooled", W_dec_SD, phrases)
    assert not isinstance(out, str), out
    names, scores, threshold = out
    assert names == ["engine", "wing", "cockpit"]
    assert (scores > 0.99).all() and 0 < threshold < 0.99  # planted directions pass the random-direction bar


def test_random_directions_rarely_pass_the_clip_threshold(tiny_clip):
    """The threshold is the 99th percentile of random directions' best cosine: fresh random decoder
    rows (another seed) pass it about 1% of the time, so their phrases stay guesses."""
    W_dec_SD = torch.randn(400, 48, generator=torch.Generator().manual_seed(7))
    names, scores, threshold = clip_labels(f"hf:{tiny_clip}", "vision_model.post_layernorm", "pooled", W_dec_SD,
                                           ["wing", "tail", "engine", "cockpit", "sky"])
    assert len(names) == 400 and (scores >= threshold).mean() < 0.04
    assert scores.max() > threshold * 0.9  # the bar sits at the top of the random scores, not far above


def test_incompatible_layer_or_backbone_says_why(tiny_clip):
    W = torch.randn(3, 48)
    why = clip_labels(f"hf:{tiny_clip}", "vision_model.encoder.layers.0", "sequence", W, ["a"])
    assert isinstance(why, str) and "not the pooled" in why
    why = clip_labels("timm:resnet50", "vision_model.post_layernorm", "pooled", W, ["a"])
    assert isinstance(why, str) and "not an HF CLIP" in why
    why = clip_labels(f"hf:{tiny_clip}", "vision_model.post_layernorm", "pooled", torch.randn(3, 40), ["a"])
    assert isinstance(why, str) and "does not match" in why
