"""Heatmap PNGs of a run's top examples, rendered on demand and cached under RUN/heatmaps/DB_ID/.

``Overlays(run)`` opens the feature DB and the dataset behind the store once;
``png(latent, ranking, rank)`` returns the path of the cached PNG, rendering it first when
it is missing. The images are read from the dataset recorded in the DB, not from the
store, so a report can be rebuilt after the store is deleted.

The cache is keyed by the DB's identity (``meta.db_id``, a random id each analysis writes),
so a cache left by an earlier analysis, even one whose clean-up a kill prevented, is never
served for a newer DB; ``prune`` removes such leftovers.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from visae.analysis.db import FeatureDB
from visae.analysis.heatmaps import render
from visae.analysis.inputs import Images
from visae.atomic import write_with
from visae.errors import VisaeError

HEATMAP_DIR = "heatmaps"


class Overlays:
    """Cached heatmap overlays of one analysed run."""

    def __init__(self, run: str | Path, size: int = 160):
        self.run = Path(run)
        self.db = FeatureDB(self.run)
        self.size = size
        m = self.db.meta
        self.images = Images(m["dataset"], m["split"], m["preprocess"])
        self.dir = self.db.path.parent / HEATMAP_DIR / db_identity(self.db)

    def png(self, latent: int, ranking: str = "max", rank: int = 0) -> Path:
        """Path of the overlay of the latent's ``rank``-th top image under ``ranking``."""
        path = self.dir / f"{latent}-{ranking}-{rank}-{self.size}.png"
        if path.is_file():
            return path
        rows = self.db.top_examples(latent, ranking)
        if rank >= len(rows):
            raise VisaeError(f"latent {latent} has {len(rows)} top images under '{ranking}', no rank {rank}",
                             f"ranks are 0..{len(rows) - 1}" if rows else "it never fired on the analysed images")
        row = rows[rank]
        vmax = float(self.db.latent(latent)["max_act"])
        img = render(self.images.view(row["image_index"]), row["map"], vmax, self.size)
        write_with(path, lambda tmp: img.save(tmp, format="PNG"))
        return path

    def prune(self) -> None:
        """Remove the caches of other DBs than this one (call it holding the run's lock)."""
        root = self.dir.parent
        for p in root.iterdir() if root.is_dir() else []:
            if p != self.dir:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def close(self) -> None:
        self.db.close()


def db_identity(db: FeatureDB) -> str:
    """The DB's ``meta.db_id``; for a DB written before visae recorded one, a hash of its file's inode,
    size and modification time (a rewritten DB is a new file)."""
    if db.meta.get("db_id"):
        return str(db.meta["db_id"])
    st = db.path.stat()
    return "f" + hashlib.sha256(f"{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:24]


def lock_dir(path: str | Path) -> Path:
    """The directory whose lock covers writes into an analysed SAE ``path``: the run it belongs to
    (RUN for RUN/saes/NAME), else ``path`` itself."""
    from visae.artifact import read_marker
    from visae.sae.importers import RUN_KIND, RUN_SAES

    path = Path(path)
    if path.is_file():  # the DB file itself
        path = path.parent
    root = path.parent.parent
    if path.parent.name == RUN_SAES and root.is_dir() and (read_marker(root) or {}).get("kind") == RUN_KIND:
        return root
    return path
