"""The SAELens folder layout: ``cfg.json`` + ``sae_weights.safetensors``.

Weights: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec``
[d_in], plus ``threshold`` [d_sae] for JumpReLU-style inference (jumprelu, batchtopk,
matryoshka). cfg.json carries SAELens's fields (``architecture``, ``d_in``, ``d_sae``,
``dtype``, ``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``k``), the
SAELens 6 ``metadata`` block (backbone as ``model_name``, layer as ``hook_name``, dataset
as ``dataset_path``, ...), the same names under ``meta`` as visae 0.1 wrote them, and
visae's own metadata under ``"visae"`` (the exact architecture and spec, backbone, layer,
token layout, store statistics). Normalisation is folded into the weights: a saved SAE
takes raw activations (``normalize_activations: "none"``). ``visae.weights_checksum`` records the
weights file's checksum; loading verifies it (folders of other writers have none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from visae.atomic import write_json, write_with
from visae.checksum import check_file, default_checksum, hash_file
from visae.errors import VisaeError
from visae.sae.base import SAE, SAESpec, create_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
WEIGHTS_CHECKSUM = "weights_checksum"
"""Key of cfg.json's ``visae`` block: ``'algo:hexdigest'`` of sae_weights.safetensors."""

FROM_SAELENS_ARCH = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
"""SAELens inference architecture -> the visae architecture computing the same function."""
SAELENS_TRAINING_ARCH = {"relu": "standard", "topk": "topk", "batchtopk": "batchtopk", "jumprelu": "jumprelu",
                         "matryoshka": "matryoshka_batchtopk"}  # fmt: skip
"""visae architecture -> SAELens's name for the same training scheme (``metadata.training_architecture``)."""
SAELENS_FORMAT = "6.0.0"
"""The SAELens cfg.json format the files follow, written as ``metadata.sae_lens_version``: SAELens
reads a cfg without it as pre-6.0 and then drops the ``metadata`` block."""


def saelens_cfg(sae: SAE) -> dict[str, Any]:
    """cfg.json for ``sae``: SAELens fields first, visae's metadata under 'visae'."""
    meta = dict(sae.meta)
    cfg: dict[str, Any] = {
        "architecture": sae.saelens_arch,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": saelens_metadata(sae),
        "meta": {
            "model_name": meta.get("backbone"),
            "hook_name": meta.get("layer"),
            "dataset_path": meta.get("dataset"),
        },
    }
    if sae.saelens_arch == "topk":
        cfg["k"] = sae.spec.k
    cfg["visae"] = {"arch": sae.spec.arch, "spec": sae.spec.model_dump(), **meta}
    return cfg


def saelens_metadata(sae: SAE) -> dict[str, Any]:
    """SAELens 6's ``metadata``: how to use the SAE (which model, which hook), in its field names.

    ``model_name`` is visae's backbone spec, ``hook_name`` the layer (a module name of that
    backbone; also ``hf_hook_name`` for ``hf:`` backbones), ``dataset_path`` the data spec,
    ``context_size`` the tokens the layer outputs per image. Fields for language models
    (``prepend_bos``, ``hook_head_index``, ...) are left out.
    """
    meta, spec = sae.meta, sae.spec
    details: dict[str, Any] = {"k": spec.k} if spec.k is not None else {}
    if spec.arch == "matryoshka":
        details["matryoshka_widths"] = list(getattr(sae, "prefixes", spec.prefixes or []))
    md: dict[str, Any] = {
        "sae_lens_version": SAELENS_FORMAT,
        "sae_lens_training_version": None,  # trained by visae, not by SAELens
        "model_name": meta.get("backbone"),
        "hook_name": meta.get("layer"),
        "dataset_path": meta.get("dataset"),
        "context_size": _context_size(meta.get("layout")),
        "training_architecture": SAELENS_TRAINING_ARCH.get(spec.arch, spec.arch),
        "training_architecture_details": details,
    }
    if str(meta.get("backbone") or "").startswith("hf:"):
        md["hf_hook_name"] = meta.get("layer")
    return md


def _context_size(layout: Any) -> int | None:
    """Tokens one image yields at the layer (all kinds: CLS, registers, patches), when fixed."""
    if not isinstance(layout, dict):
        return None
    grid = layout.get("grid")
    if layout.get("kind") == "pooled":
        return 1
    if not grid:
        return None
    return int(layout.get("n_cls") or 0) + int(layout.get("n_registers") or 0) + int(grid[0]) * int(grid[1])


def save_saelens(sae: SAE, folder: str | Path) -> Path:
    """Write ``sae`` as a SAELens folder (each file atomically); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.float().contiguous().cpu() for k, v in sae.saelens_tensors().items()}
    digest: list[str] = []

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp))
        digest.append(hash_file(tmp, default_checksum()))

    write_with(folder / WEIGHTS_FILE, write)
    cfg = saelens_cfg(sae)
    cfg["visae"][WEIGHTS_CHECKSUM] = digest[0]
    write_json(folder / CFG_FILE, cfg)
    return folder


def read_cfg(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / CFG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VisaeError(f"{folder / CFG_FILE} cannot be read ({e})", "is this an SAE folder?") from None


def load_saelens(folder: str | Path) -> SAE:
    """Read a SAELens folder (written by visae or by SAELens) into a visae SAE."""
    folder = Path(folder)
    cfg = read_cfg(folder)
    tensors = _load_weights(folder, (cfg.get("visae") or {}).get(WEIGHTS_CHECKSUM))
    spec = _spec_from_cfg(cfg, folder)
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise VisaeError(
            f"{folder} normalises activations at run time ('{norm}'), which visae cannot fold",
            "fold the scaling factor into the weights with SAELens first",
        )
    if not cfg.get("apply_b_dec_to_input", True):
        tensors = fold_b_dec_into_b_enc(tensors)
    sae = create_sae(spec)
    sae.load_saelens_tensors({k: v.float() for k, v in tensors.items()})
    visae_meta = {k: v for k, v in cfg.get("visae", {}).items() if k not in ("arch", "spec", WEIGHTS_CHECKSUM)}
    sae.meta = visae_meta or _meta_from_saelens(cfg)
    return sae


def _load_weights(folder: Path, expected: str | None) -> dict[str, torch.Tensor]:
    """The weights file's tensors, checked first against the checksum cfg.json records (visae's folders)."""
    path = folder / WEIGHTS_FILE
    ours = isinstance(expected, str) and ":" in expected
    repair = ("retrain the SAE (rerun its `visae train` command with --resume to rewrite it from the last "
              "checkpoint, or with --force) or restore the file" if ours
              else "restore the file from its source (download or export it again)")  # fmt: skip
    if ours:
        check_file(path, str(expected), what=f"{WEIGHTS_FILE} of {folder}", repair=repair)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise VisaeError(f"{WEIGHTS_FILE} of {folder} is missing", repair) from None
    except Exception as e:  # safetensors raises its own errors for torn headers and short files
        raise VisaeError(f"{WEIGHTS_FILE} of {folder} cannot be read ({e})", repair) from None


def fold_b_dec_into_b_enc(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An encoder that does not subtract b_dec: ``x W + b = (x - b_dec) W + (b + b_dec W)``."""
    W, b_dec = tensors["W_enc"].double(), tensors["b_dec"].double()
    return {**tensors, "b_enc": (tensors["b_enc"].double() + b_dec @ W).to(tensors["b_enc"].dtype)}


def _spec_from_cfg(cfg: dict[str, Any], folder: Path) -> SAESpec:
    visae = cfg.get("visae") or {}
    if "spec" in visae:
        return SAESpec.build(**visae["spec"])
    arch = cfg.get("architecture", "standard")
    if arch not in FROM_SAELENS_ARCH:
        raise VisaeError(
            f"{folder}: SAELens architecture '{arch}' is not supported",
            f"supported: {', '.join(FROM_SAELENS_ARCH)}",
        )
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    return SAESpec.build(arch=FROM_SAELENS_ARCH[arch], d_in=cfg["d_in"], d_sae=cfg["d_sae"], k=k)


def _meta_from_saelens(cfg: dict[str, Any]) -> dict[str, Any]:
    """visae metadata of a foreign SAELens folder: 6.x ``metadata``, else pre-6 top-level fields."""
    meta = cfg.get("metadata") or cfg.get("meta") or {}
    return {
        "backbone": meta.get("model_name") or cfg.get("model_name"),
        "layer": meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point"),
        "dataset": meta.get("dataset_path") or cfg.get("dataset_path"),
        "source": "saelens",
    }
