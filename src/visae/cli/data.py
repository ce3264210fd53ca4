"""``visae data ...``: make and inspect datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from visae.cli.app import subcommand
from visae.cli.options import build, option
from visae.data.synth.generate import SynthAircraftConfig as G

data_app = subcommand("data", "Make and inspect image datasets (the procedural aircraft dataset, ...).")


@data_app.command("synth-aircraft")
def synth_aircraft(
    out: Optional[Path] = option(G, "out"),
    n_train: Optional[int] = option(G, "n_train"),
    n_val: Optional[int] = option(G, "n_val"),
    n_ood: Optional[int] = option(G, "n_ood"),
    size: Optional[int] = option(G, "size"),
    seed: Optional[int] = option(G, "seed"),
    difficulty: Optional[str] = option(G, "difficulty"),
    workers: Optional[int] = option(G, "workers"),
    force: Optional[bool] = option(G, "force"),
) -> None:
    """Generate the procedural aircraft dataset: images, part masks, variant/family/manufacturer labels.

    Aircraft are assembled from parts (wing planform and mount, engine layout, tail type,
    fuselage length, windows, gear, livery), posed in 3D over sky, cloud and ground
    backgrounds with distractors. Each image has a pixel-level part map (uint8, 0 =
    background). Writes DIR/{train,val,ood}/{images.npy,parts.npy,manifest.jsonl},
    info.json, hierarchy.json and preview.png; the ood split holds variants withheld
    from train and val. Open it with the data spec synth-aircraft:DIR.
    """
    flags = dict(locals())
    from visae.data.synth import generate_synth_aircraft

    cfg = build(G, None, **flags)
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
