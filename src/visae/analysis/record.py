"""Turn the results of a scan into the rows of the feature DB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visae.analysis.db import DBWriter
from visae.analysis.labels import Labels
from visae.analysis.measures import UnitScores
from visae.analysis.scan import Ranked, ScanResult
from visae.analysis.units import Patches

CLASS_MASS_LIMIT = 50
"""class_mass keeps each latent's this-many largest classes (entropy uses all of them)."""


def _parts(sc: UnitScores, C: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(part, share, distinct images, pure) of each unit; -1 / 0 / 0 / False without part masks."""
    if sc.part_C is None:
        return np.full(C, -1), np.zeros(C), np.zeros(C, np.int64), np.zeros(C, bool)
    return sc.part_C, sc.part_share_C, sc.part_images_C, sc.pure_C  # type: ignore[return-value]


def _edges(sc: UnitScores, C: int) -> tuple[list[float | None], list[float | None], np.ndarray]:
    """(edge share, edge ratio, border) of each unit; None / None / False without an interior to the grid."""
    if sc.border_C is None or sc.edge_ratio_C is None or sc.edge_share_C is None:
        return [None] * C, [None] * C, np.zeros(C, bool)
    return [float(v) for v in sc.edge_share_C], [float(v) for v in sc.edge_ratio_C], sc.border_C


def latent_rows(res: ScanResult, sc: UnitScores, labels: Labels,
                clip: tuple[list[str], np.ndarray, float] | None) -> list[tuple[Any, ...]]:  # fmt: skip
    st, sel = res.stats, sc.sel
    S = len(st.freq_S)
    part_S, part_share_S, part_images_S, pure_S = _parts(sc, S)
    share_S, ratio_S, border_S = _edges(sc, S)
    dropped = res.rankings["max"].dropped_S if "max" in res.rankings else None
    dups_S = np.zeros(S, np.int64) if dropped is None else dropped
    rows = []
    for s in range(S):
        rows.append((
            s, float(st.freq_S[s]), float(st.mean_act_S[s]), float(st.max_act_S[s]), int(sc.n_images_C[s]),
            int(sel.top_C[s]), float(sel.share_C[s]), float(sel.index_C[s]), float(sel.entropy_C[s]),
            int(sc.selective_C[s]), int(part_S[s]), float(part_share_S[s]), int(part_images_S[s]), int(pure_S[s]),
            labels.label_S[s], float(labels.score_S[s]), labels.source_S[s],
            clip[0][s] if clip else None, float(clip[1][s]) if clip else None,
            int(border_S[s]), share_S[s], ratio_S[s], int(dups_S[s]), int(max(sc.n_images_C[s] - dups_S[s], 0)),
            labels.guess_S[s], float(labels.guess_score_S[s]), labels.guess_source_S[s], labels.why_S[s],
        ))
    return rows


def channel_rows(sc: UnitScores) -> list[tuple[Any, ...]]:
    """One row per signed raw channel: unit 2d is +channel d, unit 2d+1 is -channel d."""
    sel = sc.sel
    C = len(sel.top_C)
    part_C, share_C, images_C, pure_C = _parts(sc, C)
    _, ratio_C, border_C = _edges(sc, C)
    return [
        (u, u // 2, 1 if u % 2 == 0 else -1, int(sc.n_images_C[u]), int(sel.top_C[u]), float(sel.share_C[u]),
         float(sel.index_C[u]), int(sc.selective_C[u]), int(part_C[u]), float(share_C[u]), int(images_C[u]),
         int(pure_C[u]), ratio_C[u], int(border_C[u]))
        for u in range(C)
    ]


def example_rows(name: str, r: Ranked, grid: tuple[int, int], ids: dict[int, str],
                 labels_by_image: np.ndarray) -> list[tuple[Any, ...]]:
    """Top images of one ranking; slots the latent never fired on are left out."""
    s_idx, k_idx = np.nonzero(r.score_SK > 0)
    image = r.image_SK[s_idx, k_idx]
    known = (image >= 0) & (image < len(labels_by_image))
    label = np.where(known, labels_by_image[np.clip(image, 0, max(len(labels_by_image) - 1, 0))], -1)
    blob = r.map_SKG[s_idx, k_idx].astype("<f2").tobytes()
    n = grid[0] * grid[1] * 2
    dups = (np.zeros(len(s_idx), np.int64) if r.dups_SK is None else r.dups_SK[s_idx, k_idx]).tolist()
    return [
        (s, name, k, img, ids.get(img, str(img)), lab, sc, blob[i * n : (i + 1) * n], dups[i])
        for i, (s, k, img, lab, sc) in enumerate(zip(s_idx.tolist(), k_idx.tolist(), image.tolist(), label.tolist(),
                                                      r.score_SK[s_idx, k_idx].tolist()))
    ]


def patch_rows(source: str, p: Patches, part_CK: np.ndarray | None, grid_W: int) -> list[tuple[Any, ...]]:
    rows = []
    for c, k in zip(*np.nonzero(p.score_CK > 0)):
        y, x = divmod(int(p.cell_CK[c, k]), grid_W)
        part = int(part_CK[c, k]) if part_CK is not None else -1
        rows.append((source, int(c), int(k), int(p.image_CK[c, k]), y, x, float(p.score_CK[c, k]), part))
    return rows


def class_mass_rows(class_mass_SL: np.ndarray, limit: int = CLASS_MASS_LIMIT) -> list[tuple[int, int, float]]:
    rows = []
    for s in range(class_mass_SL.shape[0]):
        m = class_mass_SL[s]
        for c in np.argsort(-m, kind="stable")[:limit]:
            if m[c] > 0:
                rows.append((s, int(c), float(m[c])))
    return rows


def fill(writer: DBWriter, res: ScanResult, scores: dict[str, UnitScores], *, grid: tuple[int, int],
         ids: dict[int, str], labels_by_image: np.ndarray, latent_rows_: list[tuple[Any, ...]],
         class_names: Sequence[str], part_names: Sequence[str] | None) -> None:
    """Add every table's rows to ``writer`` (meta is filled by the caller)."""
    writer.add("latents", latent_rows_)
    for name, r in res.rankings.items():
        writer.add("top_examples", example_rows(name, r, grid, ids, labels_by_image))
    for source in ("sae", "raw"):
        u = res.units.get(source)
        if u is not None and u.patches is not None:
            writer.add("top_patches", patch_rows(source, u.patches, scores[source].part_CK, grid[1]))
    if "raw" in scores:
        writer.add("channels", channel_rows(scores["raw"]))
    writer.add("class_mass", class_mass_rows(res.units["sae"].class_mass_CL))
    writer.add("histograms", [(s, np.asarray(h, dtype="<i8").tobytes()) for s, h in enumerate(res.stats.hist_SX)])
    tokens_L, images_L = res.class_tokens_L, res.class_images_L
    writer.add("classes", [(c, name, int(images_L[c]) if c < len(images_L) else 0,
                            int(tokens_L[c]) if c < len(tokens_L) else 0) for c, name in enumerate(class_names)])  # fmt: skip
    writer.add("parts", list(enumerate(part_names or [])))
