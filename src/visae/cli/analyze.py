"""CLI of feature analysis and the report: ``visae analyze`` and ``visae report``."""

from __future__ import annotations

from pathlib import Path

import typer

from visae.cli.app import app


@app.command("analyze")
def analyze(
    run: Path = typer.Option(..., "--run", help="SAE run directory (from `visae train`); the feature DB goes into it."),
    store: Path = typer.Option(None, "--store", help="Activation store to analyse (default: the one the run was trained on)."),
    top: int = typer.Option(None, "--top", help="Top images kept per latent and ranking, with their activation maps (default: 32)."),
    batch_images: int = typer.Option(None, "--batch-images", help="Images encoded per batch (default: sized for ~64 MiB of codes)."),
    vocab: Path = typer.Option(None, "--vocab", help="Phrases (one a line) for CLIP text-tower labels, added to the built-in list."),
    no_text_labels: bool = typer.Option(False, "--no-text-labels", help="Skip CLIP text-tower labels; label by class and part only."),
    force: bool = typer.Option(False, "--force", help="Replace an existing RUN/features.sqlite and its heatmap cache."),
) -> None:
    """Find what every SAE latent responds to, in one streaming pass over the store.

    Writes RUN/features.sqlite: per latent its firing frequency, mean and max activation, activation histogram, class distribution, top images (by max patch, summed and CLS activation) with their activation maps, the ground-truth part its top patches fall on (where the dataset has part masks, also for the raw channels), and a label.
    """
    from visae.analysis import AnalyzeConfig, summary
    from visae.analysis import analyze as run_analyze

    cfg = AnalyzeConfig.build(run=run, store=store, top=top, batch_images=batch_images, vocab=vocab,
                              text_labels=not no_text_labels, force=force)
    db = run_analyze(cfg)
    s = summary(db)
    print(f"wrote {db}: {s['n_latents']} latents over {s['n_images']} images ({s['n_tokens']} tokens); "
          f"dead {s['dead_pct']:.1f}%, dense {s['dense_pct']:.1f}%, mean L0 {s['mean_l0']:.1f}")
    if s.get("part_pure_sae") is not None:
        print(f"part-pure (top-16 patches >= 80% on one part): SAE {s['part_pure_sae']} of {s['n_latents']} latents "
              f"vs raw channels {s['part_pure_raw']} of {s['n_channels']}")
    print(f"labels: {'CLIP text tower' if s['text_labels'] == 'clip' else 'class / part (' + s['text_labels'] + ')'}")


@app.command("report")
def report(
    run: Path = typer.Option(..., "--run", help="Analysed SAE run directory (holds features.sqlite)."),
    out: Path = typer.Option(None, "--out", help="HTML file to write (default: RUN/report.html)."),
    latents: int = typer.Option(None, "--latents", help="Latent cards per section (default: 12)."),
    images: int = typer.Option(None, "--images", help="Heatmaps shown per latent (default: 5)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an --out file that visae did not write."),
) -> None:
    """Write a self-contained HTML report of an analysed run (opens offline, images inline).

    Run summary and metrics, the latent density histogram, part purity of SAE latents vs raw channels, the most class-selective latents and the best latents of each frequency band with heatmaps of their top images, and the latents of each class.
    """
    from visae.report import ReportConfig
    from visae.report import report as run_report

    path = run_report(ReportConfig.build(run=run, out=out, latents=latents, images=images, force=force))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
