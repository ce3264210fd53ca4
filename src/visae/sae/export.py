"""``visae export``: write any SAE visae can read as a SAELens folder."""

from __future__ import annotations

from pathlib import Path

from visae.artifact import prepare_out, write_marker
from visae.config import Config
from visae.lock import locked
from visae.sae.importers import load_sae
from visae.sae.saelens import save_saelens


class ExportConfig(Config):
    """Export an SAE (visae run, SAELens, sparsify, dictionary_learning) as a SAELens folder."""

    src: str
    """A visae run directory, or any SAE folder/file ``load_sae`` reads."""
    out: str
    """Folder to write (cfg.json + sae_weights.safetensors)."""
    name: str | None = None
    """Which SAE of a multi-SAE run (see RUN/saes/)."""
    force: bool = False
    """Replace whatever --out holds."""


def export(cfg: ExportConfig) -> Path:
    sae = load_sae(cfg.src, cfg.name)
    with locked(cfg.out):
        out = prepare_out(cfg.out, "sae-export", force=cfg.force)
        save_saelens(sae, out)
        write_marker(out, "sae-export", source=str(Path(cfg.src).resolve()), arch=sae.spec.arch)
    return out
