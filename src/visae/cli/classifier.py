"""CLI of the classifier stage: ``visae classifier train`` and ``visae classifier eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from visae.classifier.config import ClassifierConfig as K
from visae.cli.app import subcommand
from visae.cli.options import build, option

group = subcommand(
    "classifier",
    help="Train an image classifier to put SAEs on (a small ConvNeXt from scratch, or fine-tune a local "
    "Hugging Face checkpoint), and measure its accuracy. The output dir is a save_pretrained dir: "
    "later stages load it as hf:DIR.",
)


@group.command("train")
def train(
    data: Optional[str] = option(K, "data"),
    out: Optional[Path] = option(K, "out"),
    init: Optional[str] = option(K, "init"),
    epochs: Optional[int] = option(K, "epochs"),
    batch_size: Optional[int] = option(K, "batch_size"),
    lr: Optional[float] = option(K, "lr"),
    seed: Optional[int] = option(K, "seed"),
    size: Optional[int] = option(K, "size"),
    train_split: Optional[str] = option(K, "train_split"),
    val_split: Optional[str] = option(K, "val_split"),
    precision: Optional[str] = option(K, "precision"),
    device: Optional[str] = option(K, "device"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any ClassifierConfig field (the "
                                          "architecture too: hidden_sizes, depths, ...); flags win."),  # fmt: skip
    force: Optional[bool] = option(K, "force"),
    resume: Optional[bool] = option(K, "resume"),
) -> None:
    """Train a classifier and save it (model, image processor, metrics, accuracy) into --out.

    Example: visae classifier train --data synth-aircraft:runs/demo/data --out runs/demo/classifier
    """
    flags = {key: value for key, value in locals().items() if key != "config"}
    from visae.classifier import train_classifier

    cfg = build(K, config, **flags)
    path = train_classifier(cfg)
    print(path)


@group.command("eval")
def evaluate(
    model: Path = typer.Option(..., "--model", help="A classifier dir written by `visae classifier train`."),
    data: Optional[str] = typer.Option(None, "--data", help="Images to evaluate on (default: the training data)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: the data's val split)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass (default: 256)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report (per class too) as JSON."),
) -> None:
    """Print a classifier's top-1/top-5 accuracy, per hierarchy level (family, manufacturer) and per class.

    Example: visae classifier eval --model runs/demo/classifier --split val
    """
    from visae.classifier import EvalConfig, evaluate_classifier

    report = evaluate_classifier(EvalConfig.build(model=model, data=data, split=split, batch_size=batch_size))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_report(report)


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    print(f"{report['data']} [{report['split']}]: {report['n']} labelled images"
          + (f" ({report['n_unlabelled']} without a known label left out)" if report["n_unlabelled"] else ""))  # fmt: skip
    print(f"top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}")
    for level, acc in report.get("levels", {}).items():
        print(f"  {level:<14} top-1 {acc:.4f}")
    table = Table("class", "n", "top-1", title="per class")
    for name, row in sorted(report["per_class"].items(), key=lambda kv: kv[1]["top1"]):
        table.add_row(name, str(row["n"]), f"{row['top1']:.3f}")
    Console().print(table)
