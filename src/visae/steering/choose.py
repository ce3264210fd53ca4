"""Which latents steer-eval tests: the most class- and part-selective ones, and random live ones as a baseline.

Groups (docs/steering.md): ``class`` = the latents the feature DB calls class-selective, most
selective first; ``part`` = latents whose top patches lie on one non-background part, part-pure
ones first, then by part share; ``random`` = live latents (firing at least once in the store)
drawn with a seed from those not in another group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visae.errors import VisaeError

MIN_PART_SHARE = 0.5
"""A latent enters the part group when at least this share of its top patches lie on one non-background part."""


@dataclass(frozen=True)
class Pick:
    latent: int
    group: str
    """class, part, random or chosen (named by the user)."""
    label: str = ""
    part: str | None = None
    """The part its top patches lie on (part group)."""
    top_class: str | None = None


def choose(db_path: Path | None, d_sae: int, per_group: int, n_random: int, chosen: list[int] | None,
           seed: int = 0) -> list[Pick]:  # fmt: skip
    """The latents to test: ``chosen`` (else the class and part groups) and ``n_random`` random live latents."""
    if db_path is None:
        if chosen is None:
            raise VisaeError("--latents auto needs the run's feature DB", "run visae analyze --run RUN first, or pass --latents 3,17")
        rng = np.random.default_rng(seed)
        rest = np.setdiff1d(np.arange(d_sae), chosen)
        return [Pick(i, "chosen") for i in chosen] + [Pick(int(i), "random") for i in rng.choice(rest, min(n_random, len(rest)), replace=False)]
    from visae.analysis.db import FeatureDB

    with FeatureDB(db_path) as db:
        rows = {r["id"]: r for r in db.latents()}
        parts = db.names("parts")
        classes = db.names("classes")
    label = lambda r: r["label"] or r["guess"] or ""  # noqa: E731
    if chosen is not None:
        picks = [Pick(i, "chosen", label(rows[i]), _part(rows[i], parts), _cls(rows[i], classes)) for i in chosen]
    else:
        by_class = sorted((r for r in rows.values() if r["class_selective"]), key=lambda r: -r["class_selectivity"])
        by_part = sorted((r for r in rows.values() if r["part"] > 0 and r["part_share"] >= MIN_PART_SHARE and r["freq"] > 0),
                         key=lambda r: (-r["part_pure"], -r["part_share"], -r["part_images"]))  # fmt: skip
        picks = [Pick(r["id"], "class", label(r), _part(r, parts), _cls(r, classes)) for r in by_class[:per_group]]
        taken = {p.latent for p in picks}
        picks += [Pick(r["id"], "part", label(r), _part(r, parts), _cls(r, classes))
                  for r in [r for r in by_part if r["id"] not in taken][:per_group]]  # fmt: skip
    taken = {p.latent for p in picks}
    live = np.array(sorted(i for i, r in rows.items() if r["freq"] > 0 and i not in taken), dtype=np.int64)
    drawn = np.random.default_rng(seed).choice(live, min(n_random, len(live)), replace=False) if len(live) else []
    return picks + [Pick(int(i), "random", label(rows[int(i)]), _part(rows[int(i)], parts), _cls(rows[int(i)], classes))
                    for i in sorted(drawn)]  # fmt: skip


def _part(row, parts: list[str]) -> str | None:
    return parts[row["part"]] if parts and 0 < row["part"] < len(parts) else None


def _cls(row, classes: list[str]) -> str | None:
    return classes[row["top_class"]] if 0 <= row["top_class"] < len(classes) else None
