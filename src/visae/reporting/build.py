"""``report(cfg)``: the feature DB of a run -> one self-contained HTML file that opens offline."""

from __future__ import annotations

from pathlib import Path

from visae.analysis.db import FeatureDB
from visae.analysis.overlays import Overlays, lock_dir
from visae.artifact import remove_leftovers
from visae.atomic import write_text
from visae.errors import VisaeError
from visae.lock import locked
from visae.progress import info
from visae.reporting import sections
from visae.reporting.causal import causal
from visae.reporting.config import ReportConfig
from visae.reporting.evaluation import evaluation
from visae.reporting.template import CSS, GENERATOR, PAGE


def report(cfg: ReportConfig) -> Path:
    """Write the report and return its path. The run is locked meanwhile (the heatmap cache is written
    into it); the HTML file is written atomically, wherever it goes."""
    out = cfg.out or Path(cfg.run) / "report.html"
    _guard(out, cfg.force)
    FeatureDB(cfg.run).close()  # no DB (or a foreign one): refused before anything is locked or created
    with locked(lock_dir(cfg.run)) as owned, FeatureDB(cfg.run) as db:
        remove_leftovers(owned)
        ov = Overlays(cfg.run, size=cfg.thumb)
        try:
            ov.prune()
            body = "\n".join([
                sections.header(db), sections.legend(db), sections.density(db), sections.purity(db),
                sections.border(db), sections.selective(db, ov, cfg.latents, cfg.images),
                sections.bands(db, ov, max(2, cfg.latents // 3), cfg.images),
                sections.per_class(db), causal(cfg.run), evaluation(cfg.run),
            ])
        finally:
            ov.close()
        title = f"visae · {db.meta['backbone']} · {db.meta['layer']}"
        write_text(out, PAGE.format(generator=GENERATOR, title=sections.esc(title), css=CSS, body=body))
    info(f"report: {out}")
    return out


def _guard(out: Path, force: bool) -> None:
    if out.is_dir():
        raise VisaeError(f"--out {out} is a directory", "give a file name such as report.html")
    parent = next((p for p in out.absolute().parents if p.exists()), None)  # before any heatmap is rendered
    if parent is not None and not parent.is_dir():
        raise VisaeError(f"--out {out}: {parent} is a file, not a directory", "choose another --out")
    if out.exists() and not force:
        head = out.read_bytes()[:600].decode(errors="replace")
        if f'content="{GENERATOR}"' not in head:
            raise VisaeError(f"{out} exists and is not a visae report", "choose another --out or pass --force")
