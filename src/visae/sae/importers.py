"""``load_sae(path)``: read any SAE visae knows, whoever wrote it.

Recognised by their files:

- a visae run directory (``visae.json`` of kind sae-run): its SAE, or one of its SAEs;
- SAELens: ``cfg.json`` + ``sae_weights.safetensors``;
- sparsify (EleutherAI): ``cfg.json`` + ``sae.safetensors`` with ``encoder.weight``
  [S, D], ``encoder.bias``, ``W_dec`` [S, D], ``b_dec``;
- dictionary_learning: ``ae.pt`` (a state dict; ``config.json`` beside it names the class):
  ``encoder.weight``/``encoder.bias``/``decoder.weight`` [D, S] with ``bias`` (ReLU) or
  ``b_dec`` + ``k`` (TopK, BatchTopK), or ``W_enc``/``b_enc``/``W_dec``/``b_dec``/``threshold``
  (JumpReLU, which does not subtract b_dec; Matryoshka BatchTopK, which does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from visae.artifact import read_marker
from visae.errors import VisaeError
from visae.sae.base import SAE, SAESpec, create_sae
from visae.sae.saelens import CFG_FILE, WEIGHTS_CHECKSUM, WEIGHTS_FILE, fold_b_dec_into_b_enc, load_saelens, read_cfg

RUN_KIND = "sae-run"
RUN_SAES = "saes"


def run_sae_dirs(run_dir: Path) -> dict[str, Path]:
    """Name -> SAELens folder of every SAE a run has written."""
    root = run_dir / RUN_SAES
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CFG_FILE).is_file()}


def load_sae(path: str | Path, name: str | None = None) -> SAE:
    """Load an SAE from a visae run, a SAELens or sparsify folder, or a dictionary_learning ae.pt."""
    path = Path(path)
    if not path.exists():
        raise VisaeError(f"{path} does not exist", "pass a visae run, a SAELens/sparsify folder or an ae.pt")
    if path.is_dir() and (marker := read_marker(path)) is not None and marker.get("kind") == RUN_KIND:
        return _load_from_run(path, name)
    if path.is_file() and path.suffix == ".pt":
        return load_dictionary_learning(path)
    if (path / CFG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return load_saelens(path)
    if (path / CFG_FILE).is_file() and (path / "sae.safetensors").is_file():
        return load_sparsify(path)
    if (path / CFG_FILE).is_file() and WEIGHTS_CHECKSUM in (read_cfg(path).get("visae") or {}):
        return load_saelens(path)  # a visae SAE folder that lost its weights: says which file is missing
    if (path / "ae.pt").is_file():
        return load_dictionary_learning(path / "ae.pt")
    raise VisaeError(
        f"{path} holds no SAE visae can read",
        "expected a visae run, cfg.json + sae_weights.safetensors (SAELens), "
        "cfg.json + sae.safetensors (sparsify) or ae.pt (dictionary_learning)",
    )


def _load_from_run(run_dir: Path, name: str | None) -> SAE:
    saes = run_sae_dirs(run_dir)
    if not saes:
        raise VisaeError(f"run {run_dir} has not finished training yet (no SAE saved)", "resume it with visae train --resume")
    if name is None and len(saes) == 1:
        name = next(iter(saes))
    if name not in saes:
        raise VisaeError(
            f"run {run_dir} holds several SAEs" if name is None else f"run {run_dir} has no SAE '{name}'",
            f"pick one of: {', '.join(saes)} (e.g. {run_dir / RUN_SAES / next(iter(saes))})",
        )
    return load_saelens(saes[name])


def load_sparsify(folder: Path) -> SAE:
    """An EleutherAI sparsify SparseCoder folder (TopK activation)."""
    cfg = read_cfg(folder)
    try:
        t = load_file(str(folder / "sae.safetensors"))
    except Exception as e:  # safetensors raises its own errors for torn headers and short files
        raise VisaeError(f"{folder / 'sae.safetensors'} cannot be read ({e})",
                         "it is damaged: restore it from its source (download or save it again)") from None  # fmt: skip
    if cfg.get("transcode") or "W_skip" in t or cfg.get("activation", "topk") != "topk":
        raise VisaeError(f"{folder}: only plain top-k sparsify SAEs are supported (no transcoders, skips or groupmax)",
                         "pass a plain top-k SAE")
    S, D = t["encoder.weight"].shape
    spec = SAESpec.build(arch="topk", d_in=D, d_sae=S, k=cfg.get("k"))
    tensors = {"W_enc": t["encoder.weight"].t(), "b_enc": t["encoder.bias"], "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
    return _build(spec, tensors, {"source": "sparsify", "path": str(folder)})


def load_dictionary_learning(ae_path: Path) -> SAE:
    """A dictionary_learning ``ae.pt`` (class from ``config.json`` beside it, else from keys)."""
    try:
        sd = torch.load(ae_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise VisaeError(f"{ae_path} cannot be read as a state dict ({e})", "it is damaged or not an ae.pt: save it again") from None
    dict_class = _dict_class(ae_path.parent)
    meta = {"source": "dictionary_learning", "dict_class": dict_class, "path": str(ae_path)}
    if "W_enc" in sd:
        return _dl_w_layout(sd, dict_class, meta)
    if "encoder.weight" in sd and "decoder.weight" in sd:
        return _dl_linear_layout(sd, dict_class, meta)
    raise VisaeError(f"{ae_path}: unrecognised dictionary_learning keys {sorted(sd)[:8]}",
                     "export it as SAELens (cfg.json + sae_weights.safetensors) and pass that folder")


def _dl_w_layout(sd: dict[str, Any], dict_class: str | None, meta: dict) -> SAE:
    D, S = sd["W_enc"].shape
    tensors = {k: sd[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold") if k in sd}
    if "k" in sd:  # (Matryoshka) BatchTopK: subtracts b_dec, thresholded at inference
        k = int(sd["k"])
        if "group_sizes" in sd:
            prefixes = torch.as_tensor(sd["group_sizes"]).cumsum(0).tolist()
            spec = SAESpec.build(arch="matryoshka", d_in=D, d_sae=S, k=k, prefixes=prefixes)
        else:
            spec = SAESpec.build(arch="batchtopk", d_in=D, d_sae=S, k=k)
        thr = tensors.get("threshold")
        if thr is not None and thr.ndim == 0:
            tensors["threshold"] = thr.expand(S).clone()
        return _build(spec, tensors, meta)
    spec = SAESpec.build(arch="jumprelu", d_in=D, d_sae=S)  # JumpReluAutoEncoder: x @ W_enc, no b_dec
    return _build(spec, fold_b_dec_into_b_enc(tensors), meta)


def _dl_linear_layout(sd: dict[str, Any], dict_class: str | None, meta: dict) -> SAE:
    S, D = sd["encoder.weight"].shape
    b_dec = sd.get("b_dec", sd.get("bias"))
    if b_dec is None:
        raise VisaeError("dictionary_learning state dict has neither 'bias' nor 'b_dec'", "check that it is an SAE's ae.pt")
    tensors = {"W_enc": sd["encoder.weight"].t(), "b_enc": sd["encoder.bias"], "W_dec": sd["decoder.weight"].t(), "b_dec": b_dec}
    if "k" not in sd:
        return _build(SAESpec.build(arch="relu", d_in=D, d_sae=S), tensors, meta)
    arch = "batchtopk" if dict_class and "batch" in dict_class.lower() else "topk"
    if arch == "batchtopk" and "threshold" in sd:
        tensors["threshold"] = torch.as_tensor(sd["threshold"]).float().expand(S).clone()
    return _build(SAESpec.build(arch=arch, d_in=D, d_sae=S, k=int(sd["k"])), tensors, meta)


def _dict_class(folder: Path) -> str | None:
    f = folder / "config.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("trainer", {}).get("dict_class")
    except (OSError, json.JSONDecodeError):
        return None


def _build(spec: SAESpec, tensors: dict[str, torch.Tensor], meta: dict) -> SAE:
    sae = create_sae(spec)
    sae.load_saelens_tensors({k: torch.as_tensor(v).float() for k, v in tensors.items()})
    sae.meta = meta
    return sae
