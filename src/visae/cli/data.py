"""``visae data ...``: make and inspect datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from visae.cli.app import subcommand

data_app = subcommand("data", "Make and inspect image datasets (the procedural aircraft dataset, ...).")


@data_app.command("synth-aircraft")
def synth_aircraft(
    out: Path = typer.Option(..., "--out", help="Directory to write the dataset into."),
    n_train: int = typer.Option(None, "--n-train", help="Training images, balanced over the classes [default: 24000]."),
    n_val: int = typer.Option(None, "--n-val", help="Validation images [default: 2000]."),
    n_ood: int = typer.Option(None, "--n-ood", help="Images of the withheld out-of-distribution variants [default: 1000]."),
    size: int = typer.Option(None, "--size", help="Image side in pixels, >= 32 [default: 64]."),
    seed: int = typer.Option(None, "--seed", help="Random seed; the same seed gives byte-identical files [default: 0]."),
    difficulty: str = typer.Option(
        None, "--difficulty", help="'easy' (mostly top-down views, aircraft large in the frame, light clutter) or "
        "'hard' (oblique views from above and below, smaller, clouds and distractors in front) [default: easy]."),
    workers: int = typer.Option(None, "--workers", help="Rendering processes [default: min(2, CPUs)]; does not change the output."),
    force: bool = typer.Option(False, "--force", help="Replace whatever --out already holds."),
) -> None:
    """Generate the procedural aircraft dataset: images, part masks, variant/family/manufacturer labels.

    Aircraft are assembled from parts (wing planform and mount, engine layout, tail type,
    fuselage length, windows, gear, livery), posed in 3D over sky, cloud and ground
    backgrounds with distractors. Each image has a pixel-level part map (uint8, 0 =
    background). Writes DIR/{train,val,ood}/{images.npy,parts.npy,manifest.jsonl},
    info.json, hierarchy.json and preview.png; the ood split holds variants withheld
    from train and val. Open it with the data spec synth-aircraft:DIR.
    """
    from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft

    cfg = SynthAircraftConfig.build(out=out, n_train=n_train, n_val=n_val, n_ood=n_ood, size=size, seed=seed,
                                    difficulty=difficulty, workers=workers, force=force)
    path = generate_synth_aircraft(cfg)
    total = cfg.n_train + cfg.n_val + cfg.n_ood
    print(f"wrote {total} images ({cfg.n_train} train, {cfg.n_val} val, {cfg.n_ood} ood) of {cfg.size}px to {path}")


@data_app.command("info")
def info(
    spec: str = typer.Argument(..., help="Data spec: folder:PATH, synth-aircraft:PATH, fgvc-aircraft:PATH, hf:NAME[:SPLIT], mnist5k."),
    as_json: bool = typer.Option(False, "--json", help="Print the full description as JSON instead of a table."),
) -> None:
    """Summarise an image source: splits and sizes, classes, hierarchy, part names.

    Example: visae data info synth-aircraft:runs/demo/data
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from visae.data.describe import describe

    d = describe(spec)
    if as_json:
        print(json.dumps(d, indent=2))
        return
    table = Table(title=spec, show_header=False)
    table.add_row("classes", f"{d['num_classes']}: " + ", ".join(d["class_names"][:8]) + (" ..." if d["num_classes"] > 8 else ""))
    for name, s in d["splits"].items():
        shape = "x".join(map(str, s["image_shape"])) if s.get("image_shape") else "files"
        bad = s.get("unreadable")
        unreadable = f"; {bad['count']} unreadable file(s) left out (first: {bad['first'][0]})" if bad else ""
        table.add_row(f"split {name}", f"{s['size']} images ({s['labelled']} labelled), {shape}{unreadable}")
    if d.get("hierarchy"):
        h = d["hierarchy"]
        table.add_row("hierarchy", " -> ".join(f"{lv} ({h['sizes'][lv]})" for lv in h["levels"]))
    if d.get("part_names"):
        table.add_row("parts", ", ".join(d["part_names"]))
    Console().print(table)
