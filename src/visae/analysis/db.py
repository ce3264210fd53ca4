"""The feature DB: one SQLite file per SAE run (RUN/features.sqlite), schema in docs/formats.md.

``write_db`` builds the whole file under a temporary name and renames it into place, so a
reader never sees half a DB. ``FeatureDB`` is the read side used by heatmaps, the report
and the web viewer.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visae.atomic import atomic_path
from visae.errors import VisaeError

DB_NAME = "features.sqlite"
SCHEMA_VERSION = 3
"""2: prior-corrected class selectivity, capped top patches, signed raw channels, class counts.
3: near-duplicates collapsed (top_dups, distinct_images, top_examples.dups), border/position units
(edge_share, edge_ratio, border), best guesses of unlabelled latents (guess*)."""

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE latents (
  id INTEGER PRIMARY KEY, freq REAL NOT NULL, mean_act REAL NOT NULL, max_act REAL NOT NULL, n_images INTEGER NOT NULL,
  top_class INTEGER NOT NULL, class_share REAL NOT NULL, class_selectivity REAL NOT NULL, class_entropy REAL NOT NULL,
  class_selective INTEGER NOT NULL, part INTEGER NOT NULL, part_share REAL NOT NULL, part_images INTEGER NOT NULL,
  part_pure INTEGER NOT NULL, label TEXT NOT NULL, label_score REAL NOT NULL, label_source TEXT NOT NULL,
  clip_phrase TEXT, clip_score REAL,
  border INTEGER NOT NULL, edge_share REAL, edge_ratio REAL, top_dups INTEGER NOT NULL, distinct_images INTEGER NOT NULL,
  guess TEXT NOT NULL, guess_score REAL NOT NULL, guess_source TEXT NOT NULL, guess_why TEXT NOT NULL
);
CREATE TABLE top_examples (
  latent INTEGER NOT NULL, ranking TEXT NOT NULL, rank INTEGER NOT NULL,
  image_index INTEGER NOT NULL, image_id TEXT NOT NULL, label INTEGER NOT NULL,
  score REAL NOT NULL, map BLOB NOT NULL, dups INTEGER NOT NULL,
  PRIMARY KEY (latent, ranking, rank)
);
CREATE TABLE top_patches (
  source TEXT NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL,
  image_index INTEGER NOT NULL, y INTEGER NOT NULL, x INTEGER NOT NULL, score REAL NOT NULL,
  part INTEGER NOT NULL,
  PRIMARY KEY (source, unit, rank)
);
CREATE TABLE channels (
  id INTEGER PRIMARY KEY, channel INTEGER NOT NULL, sign INTEGER NOT NULL, n_images INTEGER NOT NULL,
  top_class INTEGER NOT NULL, class_share REAL NOT NULL, class_selectivity REAL NOT NULL,
  class_selective INTEGER NOT NULL, part INTEGER NOT NULL, part_share REAL NOT NULL, part_images INTEGER NOT NULL,
  part_pure INTEGER NOT NULL, edge_ratio REAL, border INTEGER NOT NULL
);
CREATE TABLE class_mass (latent INTEGER NOT NULL, class INTEGER NOT NULL, mass REAL NOT NULL, PRIMARY KEY (latent, class));
CREATE TABLE histograms (latent INTEGER PRIMARY KEY, bins BLOB NOT NULL);
CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n_images INTEGER NOT NULL, n_tokens INTEGER NOT NULL);
CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE INDEX top_examples_image ON top_examples (image_index);
CREATE INDEX class_mass_class ON class_mass (class, mass);
"""

LATENT_COLUMNS = (
    "id", "freq", "mean_act", "max_act", "n_images", "top_class", "class_share", "class_selectivity", "class_entropy",
    "class_selective", "part", "part_share", "part_images", "part_pure", "label", "label_score", "label_source",
    "clip_phrase", "clip_score", "border", "edge_share", "edge_ratio", "top_dups", "distinct_images",
    "guess", "guess_score", "guess_source", "guess_why",
)


def map_blob(map_HW: np.ndarray) -> bytes:
    """An activation map as little-endian float16 bytes, row-major."""
    return np.asarray(map_HW, dtype="<f2").tobytes()


def blob_map(blob: bytes, H: int, W: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").reshape(H, W).astype(np.float32)


class DBWriter:
    """Rows for a fresh DB, written in one transaction by ``write``."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        self.rows: dict[str, list[Sequence[Any]]] = {}

    def add(self, table: str, rows: Iterable[Sequence[Any]]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def write(self, path: Path) -> None:
        """Build the DB under a temporary name and rename it onto ``path``. Each write gets a new random
        ``meta.db_id``: what is cached from a DB (heatmaps) is keyed by it."""
        meta = {**self.meta, "db_id": uuid.uuid4().hex}

        def build(tmp: Path) -> None:
            con = sqlite3.connect(tmp)
            try:
                con.executescript(SCHEMA)
                con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
                for table, rows in self.rows.items():
                    if rows:
                        marks = ", ".join("?" * len(rows[0]))
                        con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                con.commit()
            finally:
                con.close()

        with atomic_path(path) as tmp:
            tmp.unlink()  # sqlite creates the file itself
            build(tmp)


class FeatureDB:
    """Read access to a run's feature DB."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / DB_NAME
        if not self.path.is_file():
            from visae.artifact import read_marker

            kind = (read_marker(self.path.parent) or {}).get("kind") if self.path.parent.is_dir() else None
            if kind not in (None, "sae-run"):
                raise VisaeError(f"{self.path.parent} is a visae {kind}, not an SAE run",
                                 "pass the directory `visae train` wrote (then `visae analyze --run RUN`)")  # fmt: skip
            raise VisaeError(f"{self.path} does not exist", "run `visae analyze --run RUN` first")
        self.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.con.row_factory = sqlite3.Row
        try:
            self.meta = {r["key"]: json.loads(r["value"]) for r in self.con.execute("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as e:
            raise VisaeError(f"{self.path} is not a visae feature DB ({e})", "rerun `visae analyze --force`") from None
        if self.meta.get("schema_version", 0) > SCHEMA_VERSION:
            raise VisaeError(f"{self.path} was written by a newer visae", "upgrade visae")
        if self.meta.get("schema_version", 0) < SCHEMA_VERSION:
            self.con.close()
            raise VisaeError(f"{self.path} was written by an older visae (feature DB schema "
                             f"{self.meta.get('schema_version', 0)}, now {SCHEMA_VERSION})", "rerun `visae analyze --force`")
        self.grid = tuple(self.meta["grid"])

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "FeatureDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return self.con.execute(sql, args).fetchall()

    def latent(self, i: int) -> sqlite3.Row:
        rows = self.query("SELECT * FROM latents WHERE id = ?", i)
        if not rows:
            raise VisaeError(f"latent {i} is not in {self.path}", f"latents are 0..{self.meta['n_latents'] - 1}")
        return rows[0]

    def latents(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM latents ORDER BY id")

    def column(self, name: str, table: str = "latents") -> np.ndarray:
        if name not in LATENT_COLUMNS and table == "latents":
            raise ValueError(name)
        return np.array([r[0] for r in self.query(f"SELECT {name} FROM {table} ORDER BY id")])

    def top_examples(self, latent: int, ranking: str = "max", limit: int | None = None) -> list[dict[str, Any]]:
        """The latent's top images under ``ranking``, best first, each with its map (H, W)."""
        sql = "SELECT * FROM top_examples WHERE latent = ? AND ranking = ? ORDER BY rank"
        rows = self.query(sql + (f" LIMIT {int(limit)}" if limit else ""), latent, ranking)
        return [dict(r) | {"map": blob_map(r["map"], *self.grid)} for r in rows]

    def histogram(self, latent: int) -> np.ndarray:
        rows = self.query("SELECT bins FROM histograms WHERE latent = ?", latent)
        return np.frombuffer(rows[0]["bins"], dtype="<i8") if rows else np.zeros(0, dtype=np.int64)

    def class_mass(self, latent: int) -> list[tuple[int, float]]:
        return [(r["class"], r["mass"]) for r in self.query(
            "SELECT class, mass FROM class_mass WHERE latent = ? ORDER BY mass DESC", latent)]

    def names(self, table: str) -> list[str]:
        return [r["name"] for r in self.query(f"SELECT name FROM {table} ORDER BY id")]
