"""CLI of feature analysis and the report: ``visae analyze`` and ``visae report``."""

from __future__ import annotations

from pathlib import Path

import typer

from visae.cli.app import app


@app.command("analyze")
def analyze(
    run: Path = typer.Option(..., "--run", help="SAE run directory (from `visae train`); the feature DB goes into it."),
    store: Path = typer.Option(None, "--store", help="Activation store to analyse (default: the one the run was trained on)."),
    tokens: str = typer.Option(None, "--tokens", help="Token kinds to analyse: patch, cls, registers or all (default: the kinds the SAE trained on)."),
    device: str = typer.Option(None, "--device", help="Where the SAEs encode: auto, cpu, cuda or cuda:N (default: auto)."),
    top: int = typer.Option(None, "--top", help="Top images kept per latent and ranking, with their activation maps (default: 32)."),
    per_image: int = typer.Option(None, "--per-image", help="At most this many of a unit's top-16 patches from one image (default: 2)."),
    min_images: int = typer.Option(None, "--min-images", help="Images of evidence a unit needs to count as part-pure or class-selective (default: 8)."),
    no_random_baseline: bool = typer.Option(False, "--no-random-baseline", help="Skip the random-init SAE baseline (saves one encoding per batch)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the random-init baseline SAE (default: 0)."),
    batch_images: int = typer.Option(None, "--batch-images", help="Images encoded per batch (default: sized for ~64 MiB of codes)."),
    vocab: Path = typer.Option(None, "--vocab", help="Phrases (one a line) for CLIP text-tower labels, added to the built-in list."),
    no_text_labels: bool = typer.Option(False, "--no-text-labels", help="Skip CLIP text-tower labels; label by class and part only."),
    force: bool = typer.Option(False, "--force", help="Replace an existing RUN/features.sqlite and its heatmap cache."),
) -> None:
    """Find what every SAE latent responds to, in one streaming pass over the store.

    Writes RUN/features.sqlite: per latent its firing frequency, mean and max activation, activation histogram, class selectivity (class-mean activations, corrected for class frequency), top images (by max patch, summed and CLS activation) with their activation maps, the ground-truth part its top patches fall on (where the dataset has part masks), and a label. Part purity and class selectivity are reported as fractions next to the same measures for the raw channels (both signs) and a random-init SAE of the same shape (docs/metrics.md).
    """
    from visae.analysis import AnalyzeConfig, summary
    from visae.analysis import analyze as run_analyze
    from visae.analysis.run import headlines

    cfg = AnalyzeConfig.build(run=run, store=store, tokens=tokens, device=device, top=top, per_image=per_image,
                              min_images=min_images, random_baseline=not no_random_baseline, seed=seed,
                              batch_images=batch_images, vocab=vocab, text_labels=not no_text_labels, force=force)
    db = run_analyze(cfg)
    s = summary(db)
    print(f"wrote {db}: {s['n_latents']} latents over {s['n_images']} images ({s['n_tokens']} tokens); "
          f"dead {s['dead_pct']:.1f}%, dense {s['dense_pct']:.1f}%, mean L0 {s['mean_l0']:.1f}")
    for what, line in headlines(s).items():
        if line is not None:
            print(f"{what}: {line}")
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
