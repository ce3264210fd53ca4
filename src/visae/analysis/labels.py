"""Readable labels for latents, each with the number that supports it.

Three sources, best first where available:

- ``clip``: for CLIP-family backbones whose analysed layer is the final pooled image
  embedding (or its projection), the latent's decoder direction is mapped into the joint
  image-text space and compared (cosine) with the text embeddings of
  ``"a photo of a {phrase}"`` for a vocabulary of phrases; the nearest phrase wins.
- ``part``: for a part-pure latent, the ground-truth part its top patches fall on; score =
  share of those patches.
- ``class``: for a class-selective latent, the class with its highest mean activation; score =
  its selectivity index (0 when it fires alike on every class, 1 on one class only).

A latent that is neither part-pure nor class-selective (docs/metrics.md) gets no class or part
label: a label names only what a measure supports.

A layer that is not projection-compatible (a patch-token layer, an intermediate block)
gets class/part labels, and the reason is recorded in the feature DB's meta table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

PROMPT = "a photo of a {phrase}"
POOLED_LAYERS = ("post_layernorm", "pooler_output", "pooler", "pooled", "image_embeds", "visual_projection")
"""Layer names (suffixes) that are the final pooled image representation of a CLIP vision tower."""

GENERIC_VOCAB = (
    "sky", "cloud", "grass", "tree", "water", "sea", "road", "building", "window", "wall", "floor",
    "person", "face", "eye", "hand", "hair", "dog", "cat", "bird", "fish", "horse", "car", "wheel",
    "airplane", "wing", "tail", "engine", "boat", "train", "bicycle", "text", "logo", "sign",
    "stripes", "dots", "checkerboard", "grid", "edge", "corner", "curve", "circle", "line",
    "texture", "fur", "feathers", "metal", "wood", "glass", "fabric", "stone", "sand", "snow",
    "red object", "green object", "blue object", "yellow object", "white object", "black object",
    "bright light", "shadow", "dark background", "blurry background", "close-up", "landscape",
    "food", "flower", "leaf", "mountain", "night", "indoor scene", "outdoor scene",
)
"""A small built-in vocabulary of everyday visual concepts, extended with class and part names."""


@dataclass
class Labels:
    label_S: list[str]
    score_S: np.ndarray
    source_S: list[str]


def class_part_labels(
    top_class_S: np.ndarray, class_score_S: np.ndarray, class_ok_S: np.ndarray, class_names: Sequence[str],
    part_S: np.ndarray | None, part_share_S: np.ndarray | None, part_ok_S: np.ndarray | None,
    part_names: Sequence[str] | None,
) -> Labels:
    """Per latent the better supported of its top class (where ``class_ok``: class-selective) and
    its dominant part (where ``part_ok``: part-pure); no label where neither holds."""
    S = len(top_class_S)
    labels, scores, sources = [""] * S, np.zeros(S), [""] * S
    for s in range(S):
        c = int(top_class_S[s])
        if c >= 0 and bool(class_ok_S[s]):
            labels[s] = class_names[c] if c < len(class_names) else f"class {c}"
            scores[s], sources[s] = float(class_score_S[s]), "class"
        if part_S is not None and part_ok_S is not None and part_names and bool(part_ok_S[s]) and int(part_S[s]) > 0 \
                and (not sources[s] or float(part_share_S[s]) >= scores[s]):  # fmt: skip
            p = int(part_S[s])
            labels[s] = part_names[p] if p < len(part_names) else f"part {p}"
            scores[s], sources[s] = float(part_share_S[s]), "part"
    return Labels(labels, scores, sources)


def projection_for_layer(layer: str, layout_kind: str, D: int, proj: torch.nn.Linear) -> torch.Tensor | None:
    """(D, E) map from the layer's space into the joint space, or None when not compatible.

    The pooled output (after the vision tower's final layer norm) is mapped by the visual
    projection; the projection's own output is already in the joint space.
    """
    if layout_kind != "pooled" or not layer.endswith(POOLED_LAYERS):
        return None
    if layer.endswith(("image_embeds", "visual_projection")) and D == proj.out_features:
        return torch.eye(D)
    if D == proj.in_features:
        return proj.weight.detach().T.float()
    return None


@torch.no_grad()
def nearest_phrases(
    W_dec_SD: torch.Tensor, proj_DE: torch.Tensor, phrases: Sequence[str],
    embed_text: Callable[[list[str]], torch.Tensor], batch: int = 64,
) -> tuple[list[str], np.ndarray]:
    """For each latent, the phrase whose prompt embedding is closest (cosine) to its direction."""
    dirs_SE = torch.nn.functional.normalize(W_dec_SD.float() @ proj_DE, dim=1)
    prompts = [PROMPT.format(phrase=p) for p in phrases]
    text_PE = torch.cat([embed_text(prompts[i : i + batch]) for i in range(0, len(prompts), batch)])
    text_PE = torch.nn.functional.normalize(text_PE.float(), dim=1)
    score_S, best_S = (dirs_SE @ text_PE.T).max(dim=1)
    return [phrases[i] for i in best_S.tolist()], score_S.numpy()


def hf_clip_text_embedder(model: torch.nn.Module, tokenizer: Callable) -> Callable[[list[str]], torch.Tensor]:
    """Text embeddings through an HF CLIPModel's (or SigLIP's) text tower and text projection."""

    def embed(prompts: list[str]) -> torch.Tensor:
        enc = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
        out = model.get_text_features(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    return embed


def vocabulary(class_names: Sequence[str], part_names: Sequence[str] | None, extra: Sequence[str] = ()) -> list[str]:
    """Class names, part names (not background), the given extra phrases and the generic list, deduplicated."""
    parts = list(part_names[1:]) if part_names else []
    seen: dict[str, None] = {}
    for p in [*extra, *class_names, *parts, *GENERIC_VOCAB]:
        p = str(p).replace("_", " ").strip()
        if p:
            seen.setdefault(p, None)
    return list(seen)


def load_hf_clip(spec: str) -> tuple[torch.nn.Module, Callable] | str:
    """The full HF CLIP/SigLIP model (both towers) and tokenizer of backbone ``spec``,
    or the reason they cannot be had (not CLIP-family, not an HF model, files missing)."""
    from visae.registry import split_spec

    scheme, name = split_spec(spec)
    if scheme not in ("hf", "huggingface", "transformers"):
        return f"backbone '{spec}' is not an HF CLIP/SigLIP model"
    name = name.split("@")[0]
    try:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(name, local_files_only=True)
        if getattr(config, "model_type", "") not in ("clip", "siglip", "siglip2"):
            return f"backbone '{spec}' ({getattr(config, 'model_type', '?')}) has no text tower"
        model = AutoModel.from_pretrained(name, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError, ImportError) as e:
        return f"cannot load the text tower of '{spec}' ({str(e).splitlines()[0][:160]})"
    return model, tokenizer


def clip_labels(
    spec: str, layer: str, layout_kind: str, W_dec_SD: torch.Tensor, phrases: Sequence[str],
    loader: Callable[[str], tuple[torch.nn.Module, Callable] | str] = load_hf_clip,
) -> tuple[list[str], np.ndarray] | str:
    """Nearest vocabulary phrase per latent through the text tower, or why not."""
    if layout_kind != "pooled" or not layer.endswith(POOLED_LAYERS):
        return f"layer '{layer}' is not the pooled image embedding, so it is not in the text tower's space"
    loaded = loader(spec)
    if isinstance(loaded, str):
        return loaded
    model, tokenizer = loaded
    proj = getattr(model, "visual_projection", None)
    if proj is None:  # SigLIP: the pooled output is already the joint embedding
        proj_DE = torch.eye(W_dec_SD.shape[1])
    else:
        proj_DE = projection_for_layer(layer, layout_kind, W_dec_SD.shape[1], proj)
        if proj_DE is None:
            return f"layer '{layer}' ({W_dec_SD.shape[1]}-d) does not match the visual projection"
    try:
        return nearest_phrases(W_dec_SD, proj_DE, phrases, hf_clip_text_embedder(model, tokenizer))
    except RuntimeError as e:  # a joint space of another width than the layer
        return f"layer '{layer}' does not map into the text tower's space ({str(e).splitlines()[0][:120]})"
