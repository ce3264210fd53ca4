"""Readable labels for latents, each with the number that supports it, and a best guess for the rest.

Three sources of evidence (``Evidence``), each with a score and a stated threshold:

- ``part``: the ground-truth part a latent's top patches fall on; score = share of those patches;
  passes when the latent is part-pure.
- ``class``: the class with the latent's highest mean activation; score = its selectivity index;
  passes when the latent is class-selective and fired on enough distinct images (near-duplicates
  counted once).
- ``clip``: for CLIP-family backbones whose analysed layer is the final pooled image embedding
  (or its projection), the latent's decoder direction is mapped into the joint image-text space
  and compared (cosine) with the text embeddings of ``"a photo of a {phrase}"``; the nearest
  phrase passes when its cosine beats what 99% of random directions reach with their own nearest
  phrase (``random_direction_threshold``).

``decide_labels``: a border/position latent is labelled ``border/position``; otherwise the passing
evidence with the highest score relative to its threshold is the label; a latent with none is
unlabelled, and its best guess (the evidence closest to its threshold) is kept apart, with the
reason it is not a label. Definitions and thresholds: docs/metrics.md, "Labels".

A layer that is not projection-compatible (a patch-token layer, an intermediate block)
gets class/part labels, and the reason is recorded in the feature DB's meta table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


BORDER_LABEL = "border/position"
CLIP_QUANTILE = 0.99
"""A CLIP phrase is a label when its cosine beats this quantile of random directions' best cosines."""
CLIP_RANDOM = 1000
"""Random directions drawn (seeded) for that baseline."""


@dataclass
class Evidence:
    """What one source says about S latents: a name, its score, the threshold and whether it passes,
    and, where it does not, why (empty where the source has nothing to say)."""

    source: str
    name_S: list[str]
    score_S: np.ndarray
    threshold: float
    pass_S: np.ndarray
    why_S: list[str]


@dataclass
class Labels:
    label_S: list[str]
    score_S: np.ndarray
    source_S: list[str]
    guess_S: list[str] = field(default_factory=list)
    """Best guess of a latent without a content label: the evidence closest to its threshold."""
    guess_score_S: np.ndarray = field(default_factory=lambda: np.zeros(0))
    guess_source_S: list[str] = field(default_factory=list)
    why_S: list[str] = field(default_factory=list)
    """Why the guess is not a label."""


def class_evidence(top_C: np.ndarray, index_C: np.ndarray, n_images_C: np.ndarray, distinct_C: np.ndarray,
                   min_images: int, class_names: Sequence[str], threshold: float) -> Evidence:  # fmt: skip
    """The top class of each latent; passes at selectivity index >= threshold on >= min_images distinct images."""
    S = len(top_C)
    names, why = [""] * S, [""] * S
    for s in range(S):
        c = int(top_C[s])
        if c < 0:
            continue
        names[s] = class_names[c] if c < len(class_names) else f"class {c}"
        if index_C[s] < threshold:
            why[s] = f"class selectivity index {index_C[s]:.2f} < {threshold}"
        elif n_images_C[s] < min_images:
            why[s] = f"fired on {int(n_images_C[s])} images < {min_images}"
        elif distinct_C[s] < min_images:
            why[s] = f"{int(distinct_C[s])} distinct images (near-duplicates counted once) < {min_images}"
    ok = np.array([bool(n) and not w for n, w in zip(names, why)], dtype=bool)
    return Evidence("class", names, np.asarray(index_C, dtype=float), threshold, ok, why)


def part_evidence(part_C: np.ndarray, share_C: np.ndarray, images_C: np.ndarray, min_images: int,
                  part_names: Sequence[str], threshold: float) -> Evidence:  # fmt: skip
    """The dominant part of each latent's top patches; passes when part-pure."""
    S = len(part_C)
    names, why = [""] * S, [""] * S
    for s in range(S):
        p = int(part_C[s])
        if p < 0:
            continue
        names[s] = part_names[p] if p < len(part_names) else f"part {p}"
        if p == 0:
            why[s] = "the top patches fall mostly on the background"
        elif share_C[s] < threshold:
            why[s] = f"part share {share_C[s]:.2f} < {threshold}"
        elif images_C[s] < min_images:
            why[s] = f"top patches from {int(images_C[s])} distinct images < {min_images}"
    ok = np.array([bool(n) and not w for n, w in zip(names, why)], dtype=bool)
    return Evidence("part", names, np.asarray(share_C, dtype=float), threshold, ok, why)


def clip_evidence(names: Sequence[str], score_S: np.ndarray, threshold: float) -> Evidence:
    """The nearest phrase of each latent; passes at cosine >= the random-direction threshold."""
    score_S = np.asarray(score_S, dtype=float)
    why = ["" if v >= threshold else f"cosine {v:.2f} < {threshold:.2f} (random-direction baseline)" for v in score_S]
    return Evidence("clip", list(names), score_S, threshold, score_S >= threshold, why)


def decide_labels(evidence: Sequence[Evidence], S: int, border_S: np.ndarray | None = None,
                  edge_ratio_S: np.ndarray | None = None) -> Labels:  # fmt: skip
    """Label, or best guess, of each of S latents (module docstring)."""
    out = Labels([""] * S, np.zeros(S), [""] * S, [""] * S, np.zeros(S), [""] * S, [""] * S)
    for s in range(S):
        said = [e for e in evidence if e.name_S[s]]
        rel = [e.score_S[s] / e.threshold if e.threshold > 0 else e.score_S[s] for e in said]
        passing = [(r, i) for i, (r, e) in enumerate(zip(rel, said)) if e.pass_S[s]]
        is_border = border_S is not None and bool(border_S[s])
        if is_border:
            ratio = float(edge_ratio_S[s]) if edge_ratio_S is not None else float("nan")
            out.label_S[s], out.score_S[s], out.source_S[s] = BORDER_LABEL, ratio, "border"
        elif passing:
            e = said[max(passing)[1]]
            out.label_S[s], out.score_S[s], out.source_S[s] = e.name_S[s], float(e.score_S[s]), e.source
            continue
        if said:
            e = said[int(np.argmax(rel))]
            out.guess_S[s], out.guess_score_S[s], out.guess_source_S[s] = e.name_S[s], float(e.score_S[s]), e.source
            out.why_S[s] = "a border/position latent" if is_border else e.why_S[s]
        elif not is_border:
            out.why_S[s] = "never fired on a labelled image"
    return out


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
def text_embeddings(phrases: Sequence[str], embed_text: Callable[[list[str]], torch.Tensor], batch: int = 64) -> torch.Tensor:
    """(P, E) unit text embeddings of the prompts of ``phrases``."""
    prompts = [PROMPT.format(phrase=p) for p in phrases]
    text_PE = torch.cat([embed_text(prompts[i : i + batch]) for i in range(0, len(prompts), batch)])
    return torch.nn.functional.normalize(text_PE.float(), dim=1)


@torch.no_grad()
def nearest_phrases(
    W_dec_SD: torch.Tensor, proj_DE: torch.Tensor, phrases: Sequence[str],
    embed_text: Callable[[list[str]], torch.Tensor] | None = None, batch: int = 64, text_PE: torch.Tensor | None = None,
) -> tuple[list[str], np.ndarray]:
    """For each latent, the phrase whose prompt embedding is closest (cosine) to its direction."""
    dirs_SE = torch.nn.functional.normalize(W_dec_SD.float() @ proj_DE, dim=1)
    if text_PE is None:
        text_PE = text_embeddings(phrases, embed_text, batch)  # type: ignore[arg-type]
    score_S, best_S = (dirs_SE @ text_PE.T).max(dim=1)
    return [phrases[i] for i in best_S.tolist()], score_S.numpy()


@torch.no_grad()
def random_direction_threshold(D: int, proj_DE: torch.Tensor, text_PE: torch.Tensor, n: int = CLIP_RANDOM,
                               quantile: float = CLIP_QUANTILE, seed: int = 0) -> float:  # fmt: skip
    """The ``quantile`` of the best phrase cosine of ``n`` random directions of the layer's space
    (Gaussian, seeded), mapped into the joint space as the latents are: a phrase a random direction
    reaches that closely says nothing about a latent."""
    g = torch.Generator().manual_seed(seed)
    dirs_NE = torch.nn.functional.normalize(torch.randn(n, D, generator=g) @ proj_DE.float(), dim=1)
    return float(torch.quantile((dirs_NE @ text_PE.T).max(dim=1).values, quantile))


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
) -> tuple[list[str], np.ndarray, float] | str:
    """Nearest vocabulary phrase per latent through the text tower with its cosine, and the
    random-direction threshold a phrase's cosine must reach to be a label; or why not."""
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
        text_PE = text_embeddings(phrases, hf_clip_text_embedder(model, tokenizer))
        names, score_S = nearest_phrases(W_dec_SD, proj_DE, phrases, text_PE=text_PE)
        return names, score_S, random_direction_threshold(W_dec_SD.shape[1], proj_DE, text_PE)
    except RuntimeError as e:  # a joint space of another width than the layer
        return f"layer '{layer}' does not map into the text tower's space ({str(e).splitlines()[0][:120]})"
