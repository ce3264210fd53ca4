"""CLI of the causal tests: ``visae steer``, ``visae ablate`` and ``visae steer-eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from visae.cli.app import app
from visae.cli.options import build, number_list, option
from visae.steering.config import AblateConfig as A
from visae.steering.config import SteerConfig as S
from visae.steering.config import SteerEvalConfig as E


def _ints(values: Optional[list[str]]) -> Optional[list[int]]:
    """--latent 3,17 --latent 5 -> [3, 17, 5] (a non-integer stays a string for the config to refuse)."""
    if values is None:
        return None
    out: list[Any] = []
    for v in values:
        out += [int(p) if p.strip().lstrip("-").isdigit() else p for p in v.split(",") if p.strip()]
    return out


@app.command("steer")
def steer(
    run: Optional[Path] = option(S, "run"),
    image: Optional[list[str]] = option(S, "image"),
    latent: Optional[list[str]] = option(S, "latent"),
    scale: Optional[str] = option(S, "scale"),
    set: Optional[str] = option(S, "set"),
    add: Optional[str] = option(S, "add"),
    where: Optional[list[str]] = option(S, "where"),
    top: Optional[int] = option(S, "top"),
    out: Optional[Path] = option(S, "out"),
    head: Optional[str] = option(S, "head"),
    device: Optional[str] = option(S, "device"),
) -> None:
    """Edit SAE latents on some images, with the SAE's error kept, and show what the model predicts before and after.

    Example: visae steer --run runs/demo/sae --image train/000001 --latent 473 --set -2x. The edit replaces the layer's output x by x + (z_edit − z)·W_dec, so everything the SAE does not explain is kept. Prints per image the top classes with probabilities before and after, the true-class margin (true logit minus the best other), whether the top-1 flipped and KL(before‖after); writes the edited latents' heatmaps before and after as PNGs. Definitions: docs/steering.md.
    """
    flags = dict(locals())
    flags["latent"] = _ints(latent)
    from visae.steering.command import steer as run_steer

    res = run_steer(build(S, None, **flags))
    for row in res["images"]:
        flip = "FLIP" if row["flip"] else "same top-1"
        print(f"{row['image']} (true: {row['label']}): margin {_f(row['margin_before'])} -> {_f(row['margin_after'])}, "
              f"{flip}, KL {row['kl']:.3f}")  # fmt: skip
        print(f"    {'before: class':<24} {'prob':>6}   |   {'after: class':<24} {'prob':>6}")
        for (cb, pb), (ca, pa) in zip(row["before"], row["after"]):
            print(f"    {cb:<24} {pb:6.3f}   |   {ca:<24} {pa:6.3f}")
        if "heatmap" in row:
            print(f"    heatmaps: {row['heatmap']}")
    s = res["summary"]
    print(f"{s['images']} image(s): flip rate {s['flip_rate']:.2f}, mean margin change {_f(s['margin_change'])}, mean KL {s['kl']:.3f}")


def _f(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


@app.command("ablate")
def ablate(
    run: Optional[Path] = option(A, "run"),
    latent: Optional[int] = option(A, "latent"),
    mode: Optional[str] = option(A, "mode"),
    images: Optional[list[str]] = option(A, "images"),
    n_images: Optional[int] = option(A, "n_images"),
    threshold: Optional[float] = option(A, "threshold"),
    draws: Optional[int] = option(A, "draws"),
    pool: Optional[int] = option(A, "pool"),
    seed: Optional[int] = option(A, "seed"),
    out: Optional[Path] = option(A, "out"),
    head: Optional[str] = option(A, "head"),
    device: Optional[str] = option(A, "device"),
) -> None:
    """Blur (or grey out) the image regions where a latent fires and measure the model, against as many random regions.

    The aircraft study's input-space test: on the latent's strongest held-out images (or the ones named), the grid cells where it fires above --threshold of its max on that image are blurred; the control blurs the same number of randomly drawn cells of the same image, --draws times. Prints the true-class margin change, flip rate and KL of both and writes RUN/steer/ablate-LATENT.json with a figure of the ablated images. Definitions: docs/steering.md.
    """
    flags = dict(locals())
    from visae.steering.command import ablate as run_ablate

    cfg = build(A, None, **flags)
    res = run_ablate(cfg)
    if not res["images"]:
        print(f"latent {cfg.latent} does not fire on any of the {res['skipped']} images: nothing to ablate")
        return
    lat, ctl = res["latent"], res["control"]
    print(f"latent {cfg.latent}, {res['mode']} of its cells (>= {res['threshold']:g} x its max per image) on {res['images']} images "
          f"({res['skipped']} skipped: latent silent), {res['cells_mean']:.1f} cells per image on average")  # fmt: skip
    print(f"{'':20}{'latent cells':>14}{'random cells':>14}")
    for key, name, fmt in (("margin_change", "margin change", _g), ("flip_rate", "flip rate", _pc), ("kl", "KL", _g)):
        print(f"{name:20}{fmt(lat.get(key)):>14}{fmt(ctl.get(key)):>14}")
    own = res.get("own_activation") or {}
    print(f"{'own activation drop':20}{_pc(own.get('latent')):>14}{_pc(own.get('control')):>14}")
    if res.get("written"):
        print(f"wrote {', '.join(res['written'])}")


def _pc(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * v:.1f}%"


def _g(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{v:+.3f}"


@app.command("steer-eval")
def steer_eval(
    run: Optional[Path] = option(E, "run"),
    latents: Optional[str] = option(E, "latents"),
    per_group: Optional[int] = option(E, "per_group"),
    random_latents: Optional[int] = option(E, "random_latents"),
    directions: Optional[int] = option(E, "directions"),
    n_images: Optional[int] = option(E, "n_images"),
    per_latent: Optional[int] = option(E, "per_latent"),
    scale: Optional[float] = option(E, "scale"),
    doses: Optional[str] = option(E, "doses"),
    ablate_mode: Optional[str] = option(E, "ablate_mode"),
    draws: Optional[int] = option(E, "draws"),
    masks: Optional[Path] = option(E, "masks"),
    probe_images: Optional[int] = option(E, "probe_images"),
    seed: Optional[int] = option(E, "seed"),
    head: Optional[str] = option(E, "head"),
    device: Optional[str] = option(E, "device"),
    force: Optional[bool] = option(E, "force"),
) -> None:
    """Causal tests of the run's most selective latents against random latents and random directions of the same norm.

    On held-out images: suppression (set to --scale x max activation on every patch) and zero-ablation with their flip rate, true-class margin change and KL; a dose-response from -10x to +10x; input-space ablation of the latents' cells against random cells; the SAE-V segmentation protocol (a linear patch probe, target- vs other-change rates) where the dataset has part masks; and on the synthetic aircraft, whether suppressing a part's latent moves predictions toward classes that differ in that part. Writes RUN/steer/*.json and PNG plots. Definitions: docs/steering.md.
    """
    flags = dict(locals())
    flags["doses"] = number_list(doses, "--doses", float, "-10,-2,0,2,10")
    from visae.steering.evaluate import steer_eval as run_eval
    from visae.steering.headline import headline_lines

    summary = run_eval(build(E, None, **flags))
    for line in headline_lines(summary):
        print(line)
