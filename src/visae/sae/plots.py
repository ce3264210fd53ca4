"""Training plots of a run: curves (loss, NMSE, L0, dead %) and latent-density histograms.

Curves of the training batches (training-time codes, e.g. BatchTopK's batch selection) are
solid; held-out evaluations of the inference-time SAE are dashed with markers.

matplotlib is the optional extra "plots"; without it the run says so and skips them.
"""

from __future__ import annotations

from pathlib import Path

from visae.atomic import write_with
from visae.progress import info

CURVES = ["loss", "nmse", "l0", "dead_pct"]


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write RUN/plots/curves.png and RUN/plots/density-NAME.png; returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        info("plots skipped: matplotlib is not installed (pip install 'visae[plots]')")
        return []
    from safetensors.torch import load_file

    from visae.sae.importers import run_sae_dirs
    from visae.sae.trainer import read_metrics

    run_dir = Path(run_dir)
    out = run_dir / "plots"
    written = [_curves(plt, read_metrics(run_dir), out / "curves.png")]
    for name, folder in run_sae_dirs(run_dir).items():
        f = folder / "sparsity.safetensors"
        if f.is_file():
            written.append(_density(plt, name, load_file(str(f))["sparsity"].numpy(), out / f"density-{name}.png"))
    return written


def _curves(plt, rows: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, key in zip(axes, CURVES):
        for name in sorted({r["sae"] for r in rows}):
            for split, style in (("train", "-"), ("heldout", "o--")):
                pts = [(r["tokens"], r[key]) for r in rows
                       if r["sae"] == name and key in r and r.get("split", "train") == split]  # fmt: skip
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{name} ({'training batch' if split == 'train' else 'held-out'})")
        ax.set_title(key)
        ax.set_xlabel("tokens")
        if key in ("loss", "nmse"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, plt, path)


def _density(plt, name: str, log10_density, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(log10_density, bins=60)
    ax.set_xlabel("log10 firing rate")
    ax.set_ylabel("latents")
    ax.set_title(f"latent density: {name}")
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path
