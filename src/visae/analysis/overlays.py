"""Heatmap PNGs of a run's top examples, rendered on demand and cached under RUN/heatmaps/.

``Overlays(run)`` opens the feature DB and the dataset behind the store once;
``png(latent, ranking, rank)`` returns the path of the cached PNG, rendering it first when
it is missing. The images are read from the dataset recorded in the DB, not from the
store, so a report can be rebuilt after the store is deleted.
"""

from __future__ import annotations

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
        self.dir = self.run / HEATMAP_DIR

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

    def close(self) -> None:
        self.db.close()
