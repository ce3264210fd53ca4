"""Turn the results of a scan into the rows of the feature DB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visae.analysis.db import DBWriter
from visae.analysis.labels import Labels
from visae.analysis.scan import Ranked, ScanResult
from visae.analysis.stats import class_selectivity

CLASS_MASS_LIMIT = 50
"""class_mass keeps each latent's this-many largest classes (entropy uses all of them)."""


def latent_rows(res: ScanResult, part: tuple[np.ndarray, np.ndarray] | None, labels: Labels,
                clip: tuple[list[str], np.ndarray] | None) -> list[tuple[Any, ...]]:
    st = res.stats
    top_S, share_S, entropy_S = class_selectivity(st.class_mass_SL)
    S = len(st.freq_S)
    part_S, part_share_S = part if part is not None else (np.full(S, -1), np.zeros(S))
    rows = []
    for s in range(S):
        rows.append((
            s, float(st.freq_S[s]), float(st.mean_act_S[s]), float(st.max_act_S[s]),
            int(top_S[s]), float(share_S[s]), float(entropy_S[s]), int(part_S[s]), float(part_share_S[s]),
            labels.label_S[s], float(labels.score_S[s]), labels.source_S[s],
            clip[0][s] if clip else None, float(clip[1][s]) if clip else None,
        ))
    return rows


def example_rows(name: str, r: Ranked, grid: tuple[int, int], ids: dict[int, str],
                 labels_by_image: np.ndarray) -> list[tuple[Any, ...]]:
    """Top images of one ranking; slots the latent never fired on are left out."""
    s_idx, k_idx = np.nonzero(r.score_SK > 0)
    image = r.image_SK[s_idx, k_idx]
    known = (image >= 0) & (image < len(labels_by_image))
    label = np.where(known, labels_by_image[np.clip(image, 0, max(len(labels_by_image) - 1, 0))], -1)
    blob = r.map_SKG[s_idx, k_idx].astype("<f2").tobytes()
    n = grid[0] * grid[1] * 2
    return [
        (s, name, k, img, ids.get(img, str(img)), lab, sc, blob[i * n : (i + 1) * n])
        for i, (s, k, img, lab, sc) in enumerate(zip(s_idx.tolist(), k_idx.tolist(), image.tolist(), label.tolist(),
                                                      r.score_SK[s_idx, k_idx].tolist()))
    ]


def patch_rows(source: str, r: Ranked, part_SK: np.ndarray | None, grid_W: int) -> list[tuple[Any, ...]]:
    rows = []
    for s, k in zip(*np.nonzero(r.score_SK > 0)):
        y, x = divmod(int(r.cell_SK[s, k]), grid_W)
        part = int(part_SK[s, k]) if part_SK is not None else -1
        rows.append((source, int(s), int(k), int(r.image_SK[s, k]), y, x, float(r.score_SK[s, k]), part))
    return rows


def class_mass_rows(class_mass_SL: np.ndarray, limit: int = CLASS_MASS_LIMIT) -> list[tuple[int, int, float]]:
    rows = []
    for s in range(class_mass_SL.shape[0]):
        m = class_mass_SL[s]
        for c in np.argsort(-m, kind="stable")[:limit]:
            if m[c] > 0:
                rows.append((s, int(c), float(m[c])))
    return rows


def fill(writer: DBWriter, res: ScanResult, *, grid: tuple[int, int], ids: dict[int, str],
         labels_by_image: np.ndarray, latent_rows_: list[tuple[Any, ...]], class_names: Sequence[str],
         part_names: Sequence[str] | None, sae_parts: np.ndarray | None, raw_parts: np.ndarray | None,
         raw_purity: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Add every table's rows to ``writer`` (meta is filled by the caller)."""
    writer.add("latents", latent_rows_)
    for name, r in res.rankings.items():
        writer.add("top_examples", example_rows(name, r, grid, ids, labels_by_image))
    if res.sae_patches is not None:
        writer.add("top_patches", patch_rows("sae", res.sae_patches, sae_parts, grid[1]))
    if res.raw_patches is not None:
        writer.add("top_patches", patch_rows("raw", res.raw_patches, raw_parts, grid[1]))
    if raw_purity is not None:
        writer.add("channels", [(d, int(p), float(sh)) for d, (p, sh) in enumerate(zip(*raw_purity))])
    writer.add("class_mass", class_mass_rows(res.stats.class_mass_SL))
    writer.add("histograms", [(s, np.asarray(h, dtype="<i8").tobytes()) for s, h in enumerate(res.stats.hist_SX)])
    writer.add("classes", list(enumerate(class_names)))
    writer.add("parts", list(enumerate(part_names or [])))
