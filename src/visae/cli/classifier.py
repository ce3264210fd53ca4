"""CLI of the classifier stage: ``visae classifier train`` and ``visae classifier eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from visae.cli.app import subcommand

group = subcommand(
    "classifier",
    help="Train an image classifier to put SAEs on (a small ConvNeXt from scratch, or fine-tune a local "
    "Hugging Face checkpoint), and measure its accuracy. The output dir is a save_pretrained dir: "
    "later stages load it as hf:DIR.",
)


@group.command("train")
def train(
    data: str = typer.Option(..., "--data", help="Training images, e.g. synth-aircraft:runs/demo/data or folder:PATH."),
    out: Path = typer.Option(..., "--out", help="Directory to write the classifier into."),
    init: Optional[str] = typer.Option(
        None, "--init", help="Fine-tune this checkpoint instead of a random ConvNeXt: hf:ORG/NAME (from the local "
        "HF cache), hf:PATH or PATH (a save_pretrained or visae classifier dir). Its head is replaced."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training split (default: 30)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (default: 128)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak AdamW learning rate (warmup, then cosine) (default: 4e-3)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of init, shuffling and augmentation (default: 0)."),
    size: Optional[int] = typer.Option(
        None, "--size", help="Input side in px (default: 64 from scratch, the checkpoint's own with --init)."
    ),
    train_split: Optional[str] = typer.Option(None, "--train-split", help="Split to train on (default: the data's train split)."),
    val_split: Optional[str] = typer.Option(None, "--val-split", help="Split to validate on (default: the data's val split)."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="auto (time fp32 and bf16 here, keep the faster), fp32 or bf16 (default: auto)."
    ),
    device: Optional[str] = typer.Option(
        None, "--device", help="auto (the GPU if there is one), cpu or cuda[:N] (default: auto). A run begun on one "
        "device can be resumed on another."
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any ClassifierConfig field; flags win."),
    force: bool = typer.Option(False, "--force", help="Replace whatever is in --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last epoch."),
) -> None:
    """Train a classifier and save it (model, image processor, metrics, accuracy) into --out.

    Example: visae classifier train --data synth-aircraft:runs/demo/data --out runs/demo/classifier
    """
    from visae.classifier import ClassifierConfig, train_classifier

    flags = dict(data=data, out=out, init=init, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, size=size,
                 train_split=train_split, val_split=val_split, precision=precision, device=device, force=force or None,
                 resume=resume or None)  # fmt: skip
    cfg = ClassifierConfig.from_toml(config, **flags) if config else ClassifierConfig.build(**flags)
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
