"""PNG plots of steer-eval: dose-response, suppression against its baselines, ablation, segmentation.

matplotlib is the optional extra "plots"; without it the plots are skipped with a note (the JSON
tables and the report carry the same numbers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visae.figures import pyplot, save


def plot_all(out: Path, results: dict[str, Any]) -> list[Path]:
    plt = pyplot()
    if plt is None:
        return []
    written = [plot_dose(plt, results["dose"], out / "dose.png"), plot_suppression(plt, results["suppression"], out / "suppression.png")]
    abl = results["ablation"].get("latents")
    if abl:
        from visae.steering.ablate import plot_ablation

        plot_ablation(abl, out / "ablation.png")
        written.append(out / "ablation.png")
    if "parts" in results["segmentation"]:
        from visae.steering.segment import plot_segmentation

        plot_segmentation(results["segmentation"], out / "segmentation.png")
        written.append(out / "segmentation.png")
    return written


def plot_dose(plt: Any, dose: dict[str, Any], path: Path) -> Path:
    """Flip rate and true-class margin change against the dose (multiples of the latent's max activation)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for latent, d in dose["latents"].items():
        xs = [r["dose"] for r in d["rows"]]
        for ax, key in zip(axes, ("flip_rate", "margin_change")):
            ax.plot(xs, [r[key] if r[key] is not None else float("nan") for r in d["rows"]], marker="o",
                    label=f"latent {latent} ({d['group']})")  # fmt: skip
    for ax, title in zip(axes, ("flip rate", "true-class margin change (logits)")):
        ax.set_xlabel("set to dose x max activation, every patch")
        ax.set_title(title)
        ax.axvline(0, color="grey", lw=0.6)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save(plt, fig, path)


def plot_suppression(plt: Any, sup: dict[str, Any], path: Path) -> Path:
    """Per latent: flip rate of its suppression, and of the same edit along random directions of the same norm."""
    rows = [r for r in sup["latents"] if "suppress" in r]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 3.6))
    xs = range(len(rows))
    colours = {"class": "tab:blue", "part": "tab:green", "chosen": "tab:purple", "random": "tab:grey"}
    ax.bar([x - 0.2 for x in xs], [r["suppress"]["flip_rate"] for r in rows], width=0.4,
           color=[colours.get(r["group"], "tab:blue") for r in rows], label="latent (colour: group)")  # fmt: skip
    ax.bar([x + 0.2 for x in xs], [r["suppress_random_direction"]["flip_rate"] or 0 for r in rows], width=0.4,
           color="white", edgecolor="black", hatch="//", label="random direction, same norm")  # fmt: skip
    ax.set_xticks(list(xs), [f"{r['latent']}\n{r['group']}" for r in rows], fontsize=7)
    ax.set_ylabel("flip rate")
    ax.set_title(f"suppression at {sup['scale']:g} x max activation on every patch ({sup['split']} images)")
    ax.legend(fontsize=8)
    return save(plt, fig, path)
