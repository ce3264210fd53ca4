"""CLI of feature analysis and the report: ``visae analyze`` and ``visae report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from visae.analysis.config import AnalyzeConfig as A
from visae.cli.app import app
from visae.cli.options import build, option
from visae.reporting.config import ReportConfig as R


@app.command("analyze")
def analyze(
    run: Optional[Path] = option(A, "run"),
    store: Optional[Path] = option(A, "store"),
    tokens: Optional[str] = option(A, "tokens"),
    device: Optional[str] = option(A, "device"),
    top: Optional[int] = option(A, "top"),
    spare: Optional[int] = option(A, "spare"),
    dedup: Optional[bool] = option(A, "dedup"),
    per_image: Optional[int] = option(A, "per_image"),
    min_images: Optional[int] = option(A, "min_images"),
    random_baseline: Optional[bool] = option(A, "random_baseline"),
    seed: Optional[int] = option(A, "seed"),
    batch_images: Optional[int] = option(A, "batch_images"),
    vocab: Optional[Path] = option(A, "vocab"),
    text_labels: Optional[bool] = option(A, "text_labels"),
    force: Optional[bool] = option(A, "force"),
) -> None:
    """Find what every SAE latent responds to, in one streaming pass over the store.

    Writes RUN/features.sqlite: per latent its firing frequency, mean and max activation, activation histogram, class selectivity (class-mean activations, corrected for class frequency), top images (by max patch, summed and CLS activation) with their activation maps, the ground-truth part its top patches fall on (where the dataset has part masks), and a label. Part purity and class selectivity are reported as fractions next to the same measures for the raw channels (both signs) and a random-init SAE of the same shape (docs/metrics.md).
    """
    flags = dict(locals())
    from visae.analysis import summary
    from visae.analysis import analyze as run_analyze
    from visae.analysis.run import headlines

    db = run_analyze(build(A, None, **flags))
    from visae.distributed import world

    if not world().main:  # under torchrun every rank ran the command; rank 0 wrote the DB and reports
        return
    s = summary(db)
    print(f"wrote {db}: {s['n_latents']} latents over {s['n_images']} images ({s['n_tokens']} tokens); "
          f"dead {s['dead_pct']:.1f}%, dense {s['dense_pct']:.1f}%, mean L0 {s['mean_l0']:.1f}")
    for what, line in headlines(s).items():
        if line is not None:
            print(f"{what}: {line}")
    print(f"labels: {'CLIP text tower' if s['text_labels'] == 'clip' else 'class / part (' + s['text_labels'] + ')'}")
    counts = s.get("labels")
    if counts:
        by = ", ".join(f"{k} {v}" for k, v in sorted(counts["by_source"].items())) or "none"
        print(f"labelled latents: {by}; unlabelled (below every threshold, best guess kept apart): {counts['unlabelled']}")
    from visae.analysis.db import FeatureDB

    with FeatureDB(db) as fdb:
        d = fdb.meta.get("dedup") or {}
    if "reason" in d:
        print(f"near-duplicate images: not collapsed ({d['reason']})")
    elif d:
        print(f"near-duplicate images: {d['pairs']} pairs among {d['images']} compared; "
              f"{d['dropped'].get('max', 0)} entries collapsed from {d['latents'].get('max', 0)} latents' top lists")


@app.command("report")
def report(
    run: Optional[Path] = option(R, "run"),
    out: Optional[Path] = option(R, "out"),
    latents: Optional[int] = option(R, "latents"),
    images: Optional[int] = option(R, "images"),
    thumb: Optional[int] = option(R, "thumb"),
    force: Optional[bool] = option(R, "force"),
) -> None:
    """Write a self-contained HTML report of an analysed run (opens offline, images inline).

    Run summary and metrics, the latent density histogram, part purity of SAE latents vs raw channels, the most class-selective latents and the best latents of each frequency band with heatmaps of their top images, and the latents of each class.
    """
    flags = dict(locals())
    from visae.reporting import report as run_report

    path = run_report(build(R, None, **flags))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
