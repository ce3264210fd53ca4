"""The classifier stage: ``train_classifier(cfg) -> Path``.

AdamW with a linear warmup into a cosine decay (per step), label-smoothed cross-entropy,
random flips and shifts. After every epoch it reports train/val top-1, appends a row to
``metrics.jsonl`` and checkpoints (``checkpoint.pt``) so ``resume`` continues an
interrupted run. The marker says ``complete: false`` until the model, processor and
``visae_classifier.json`` are all written; only then does it say ``complete: true`` and
the checkpoint is removed. The checkpoint is device-neutral (loaded onto the CPU, then
moved), so a run begun on a GPU can be resumed on a CPU and the other way round.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from visae.artifact import prepare_out, read_marker, write_marker
from visae.atomic import write_json, write_text, write_with
from visae.classifier.augment import flip_shift
from visae.classifier.config import ClassifierConfig
from visae.classifier.evaluate import accuracy_report, predict
from visae.classifier.model import DEFAULT_SIZE, KIND, META, build_random, load_init, save_classifier
from visae.classifier.runtime import set_threads
from visae.classifier.speed import Speed, choose_speed, gpu_speed
from visae.data.base import Dataset, Split, open_dataset
from visae.data.transforms import Preprocess
from visae.device import resolve_device
from visae.errors import VisaeError
from visae.identity import check_same, dataset_identity
from visae.lock import locked
from visae.progress import info, make_progress
from visae.registry import absolute_spec

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RUN_KEYS_IGNORED_ON_RESUME = {"force", "resume", "threads", "eval_batch_size", "precision", "channels_last", "device"}
"""Settings that change how fast a run goes, not what it computes: a resume may change them."""


@dataclass
class Run:
    """Everything the epoch loop mutates."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    speed: Speed
    epoch: int = 0
    seconds: float = 0.0
    rows: list[dict[str, Any]] | None = None
    dataset: dict[str, Any] | None = None
    """Identity of the dataset (``visae.identity``), kept in the checkpoint: a resume must read the same."""


def train_classifier(cfg: ClassifierConfig) -> Path:
    """Train the classifier ``cfg`` describes; returns the output directory. A classifier already in ``cfg.out``
    with the same settings is reused when finished and continued when interrupted (as ``--resume`` does)."""
    earlier = _earlier(cfg)
    if earlier == "finished":
        info(f"{cfg.out}: already trained (same settings); pass --force to redo it")
        return Path(cfg.out)
    if earlier == "unfinished":
        info(f"{cfg.out}: continuing the interrupted training (same settings; --force starts it over)")
        cfg = cfg.model_copy(update={"resume": True})
    threads = set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    ds = open_dataset(cfg.data)
    if len(ds.class_names) < 2:
        raise VisaeError(f"{cfg.data} has {len(ds.class_names)} class(es)", "a classifier needs at least two")
    train_split = ds.split(cfg.train_split or ds.default_split("train"))
    val_split = ds.split(cfg.val_split or ds.default_split("val"))
    if len(train_split) == 0:
        raise VisaeError(f"split '{train_split.name}' of {cfg.data} is empty", "choose another --train-split")
    model, preprocess = _build_model(cfg, ds)  # before touching --out: a bad --init leaves nothing behind
    _probe_batch(train_split, preprocess, cfg.batch_size, cfg.data)  # and so does a folder of unreadable images
    model = model.to(device)
    data_id = dataset_identity(ds, [train_split, val_split])
    with locked(cfg.out):  # one writer per output directory, until the model is saved
        out = _prepare(cfg)
        run = _start(cfg, model, train_split, preprocess, out, data_id)
        _fit(cfg, run, train_split, val_split, preprocess, out)
        final = _final_val(cfg, run, ds, val_split, preprocess)
        _save(cfg, out, run, ds, preprocess, final, threads, (train_split.name, val_split.name))
    info(
        f"[bold green]done[/] {out}: val top-1 {final['top1']:.3f} on {final['n']} images "
        f"after {run.epoch} epochs, {run.seconds:.0f} s of training ({run.speed.name} on {device})"
    )
    return out


def _prepare(cfg: ClassifierConfig) -> Path:
    marker = read_marker(cfg.out) if Path(cfg.out).is_dir() else None
    if cfg.resume and marker and marker.get("kind") == KIND and marker.get("complete"):
        raise VisaeError(f"{cfg.out} holds a finished classifier; there is nothing to resume", "pass --force to retrain")
    out = prepare_out(cfg.out, KIND, force=cfg.force, resume=cfg.resume)
    if not (out / CHECKPOINT).is_file():
        write_marker(out, KIND, complete=False, data=cfg.data)
    return out


def _build_model(cfg: ClassifierConfig, ds: Dataset) -> tuple[nn.Module, Preprocess]:
    if cfg.init:
        return load_init(cfg.init, ds.class_names, cfg.size)
    size = cfg.size or DEFAULT_SIZE
    return build_random(cfg, ds.class_names, size), Preprocess(size=size, crop_pct=1.0)


def _start(cfg: ClassifierConfig, model: nn.Module, split: Split, pre: Preprocess, out: Path,
           data_id: dict[str, Any]) -> Run:  # fmt: skip
    """Optimizer, schedule and speed choice; restored from the checkpoint when resuming."""
    ckpt = _read_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).is_file() else None
    if ckpt is not None:
        _check_same_run(cfg, ckpt["config"])
        check_same(ckpt.get("dataset"), data_id, "dataset", out)
        model.load_state_dict(ckpt["model"])
    steps_per_epoch = math.ceil(len(split) / cfg.batch_size)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(cfg, steps_per_epoch))
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])  # moves the state onto the parameters' device
        sched.load_state_dict(ckpt["scheduler"])
        speed = Speed(**ckpt["speed"])
        if speed.device_type != _device(model).type:  # resumed elsewhere: choose for this device
            speed = _choose_speed(cfg, model, split, pre)
        info(f"resuming {out} after epoch {ckpt['epoch']}/{cfg.epochs}")
        return Run(model, opt, sched, speed, ckpt["epoch"], ckpt["seconds"], ckpt["rows"], data_id)
    return Run(model, opt, sched, _choose_speed(cfg, model, split, pre), rows=[], dataset=data_id)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except Exception as e:  # torch raises RuntimeError, EOFError or UnpicklingError for a torn file
        reason = str(e).strip().splitlines()[0].split(". ")[0][:200] if str(e).strip() else type(e).__name__
        raise VisaeError(f"cannot read the checkpoint {path} ({type(e).__name__}: {reason})",
                         "it is damaged: rerun with --force to train from the start") from None  # fmt: skip


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _choose_speed(cfg: ClassifierConfig, model: nn.Module, split: Split, pre: Preprocess) -> Speed:
    if _device(model).type != "cpu":
        return gpu_speed(cfg.precision, cfg.channels_last, _device(model).type)
    x_BCHW, labels_B = _probe_batch(split, pre, cfg.batch_size, cfg.data)
    speed = choose_speed(model, x_BCHW, labels_B, cfg.precision, cfg.channels_last)
    if speed.step_ms:
        timings = ", ".join(f"{k} {v:.0f} ms" for k, v in speed.step_ms.items())
        info(f"training step on this machine: {timings} -> using {speed.name}")
    return speed


def _probe_batch(split: Split, pre: Preprocess, batch_size: int, data: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One real training batch (for timing the compute variants); refuses a split with no readable image."""
    from visae.data.loader import ImageLoader

    loader = ImageLoader(split, pre, batch_size, shuffle=True, seed=0)
    batch = next(iter(loader), None)
    if batch is None:
        first = f" (first: {loader.skipped[0][0]}: {loader.skipped[0][1]})" if loader.skipped else ""
        raise VisaeError(
            f"none of the {len(split)} images of split '{split.name}' of {data} could be read{first}",
            f"check the files (`visae data info {data}` counts the readable ones), or choose another --data",
        )
    return batch.pixels_BCHW, torch.as_tensor(batch.labels_B).clamp(min=0)


def _earlier(cfg: ClassifierConfig) -> str | None:
    """'finished' or 'unfinished' when ``cfg.out`` holds a classifier begun with these settings (one begun with
    others is refused, naming them); None when there is none to reuse, or --force / --resume says what to do."""
    out = Path(cfg.out)
    marker = read_marker(out) if out.is_dir() and not (cfg.force or cfg.resume) else None
    if not marker or marker.get("kind") != KIND:
        return None
    try:
        if marker.get("complete"):
            saved = json.loads((out / META).read_text())["config"]
        elif (out / CHECKPOINT).is_file():
            saved = _read_checkpoint(out / CHECKPOINT)["config"]
        else:
            return None
    except (OSError, ValueError, KeyError):  # unreadable: prepare_out refuses the directory as before
        return None
    _check_same_run(cfg, saved)
    return "finished" if marker.get("complete") else "unfinished"


def _check_same_run(cfg: ClassifierConfig, saved: dict[str, Any]) -> None:
    now = cfg.model_dump(mode="json")
    saved = {**saved, **{k: absolute_spec(saved[k]) for k in ("data", "init") if isinstance(saved.get(k), str)}}  # as typed before 0.3
    diff = [k for k in now if k not in RUN_KEYS_IGNORED_ON_RESUME and now[k] != saved.get(k)]
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise VisaeError(f"{cfg.out} holds a classifier trained with other settings ({changes})",
                         "rerun with the original flags to reuse or continue it, pass --force to start over, or choose another --out")  # fmt: skip


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and conv kernels; leave norms, biases and layer scales alone."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _warmup_cosine(cfg: ClassifierConfig, steps_per_epoch: int):
    """lr multiplier at step t: linear 0 -> 1 over the warmup, then cosine 1 -> min_lr_ratio."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / (warmup + 1)
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _fit(cfg: ClassifierConfig, run: Run, train: Split, val: Split, pre: Preprocess, out: Path) -> None:
    run.model = run.speed.layout(run.model)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    with make_progress() as bar:
        task = bar.add_task("train", total=cfg.epochs * steps_per_epoch, completed=run.epoch * steps_per_epoch, info="")
        while run.epoch < cfg.epochs:
            t0 = time.perf_counter()
            loss, train_acc = _train_epoch(cfg, run, train, pre, bar, task)
            logits_NL, labels_N, _ = predict(run.model, val, pre, cfg.eval_batch_size, run.speed, bar)
            val_acc = float((logits_NL.argmax(1) == labels_N)[labels_N >= 0].mean()) if len(labels_N) else math.nan
            run.epoch += 1
            run.seconds += time.perf_counter() - t0
            row = {"epoch": run.epoch, "loss": loss, "train_top1": train_acc, "val_top1": val_acc,
                   "lr": run.sched.get_last_lr()[0], "seconds": round(run.seconds, 2)}  # fmt: skip
            run.rows.append(row)
            write_text(out / METRICS, "".join(json.dumps(r) + "\n" for r in run.rows))
            _checkpoint(cfg, run, out)
            info(f"epoch {run.epoch:>3}/{cfg.epochs}  loss {loss:.3f}  train {train_acc:.3f}  val {val_acc:.3f}  "
                 f"({run.seconds:.0f} s)")  # fmt: skip


def _train_epoch(
    cfg: ClassifierConfig, run: Run, split: Split, pre: Preprocess, bar: Progress, task: Any
) -> tuple[float, float]:
    """One pass over ``split``; returns (mean loss, top-1 on the augmented batches)."""
    from visae.data.loader import ImageLoader

    device = _device(run.model)
    loader = ImageLoader(split, pre, cfg.batch_size, shuffle=True, seed=cfg.seed, pin_memory=device.type == "cuda")
    loader.epoch = run.epoch  # the loader draws this epoch's order from (seed, epoch): resumable
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + run.epoch)  # and so does the augmentation
    run.model.train()
    loss_sum, right, seen = 0.0, 0, 0
    for batch in loader:
        x_BCHW = batch.pixels_BCHW.to(device, non_blocking=True)
        x_BCHW = flip_shift(x_BCHW, cfg.augment_shift, cfg.augment_flip, gen)  # on the device, CPU-drawn offsets
        labels_B = torch.as_tensor(batch.labels_B, dtype=torch.long).to(device, non_blocking=True)
        with run.speed.autocast():
            logits_BL = run.model(pixel_values=run.speed.layout(x_BCHW)).logits
        loss = F.cross_entropy(logits_BL.float(), labels_B, label_smoothing=cfg.label_smoothing, ignore_index=-1)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        n = int((labels_B >= 0).sum())
        loss_sum += loss.item() * n
        right += int((logits_BL.detach().argmax(1) == labels_B).sum())
        seen += n
        bar.update(task, advance=1, info=f"epoch {run.epoch + 1} loss {loss_sum / max(seen, 1):.3f}")
    return loss_sum / max(seen, 1), right / max(seen, 1)


def _checkpoint(cfg: ClassifierConfig, run: Run, out: Path) -> None:
    state = {
        "epoch": run.epoch,
        "seconds": run.seconds,
        "rows": run.rows,
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "speed": {"bf16": run.speed.bf16, "channels_last": run.speed.channels_last, "step_ms": run.speed.step_ms,
                  "device_type": run.speed.device_type},  # fmt: skip
        "config": cfg.model_dump(mode="json"),
        "dataset": run.dataset,
    }
    write_with(out / CHECKPOINT, lambda p: torch.save(state, p))


def _final_val(cfg: ClassifierConfig, run: Run, ds: Dataset, val: Split, pre: Preprocess) -> dict[str, Any]:
    logits_NL, labels_N, skipped = predict(run.model, val, pre, cfg.eval_batch_size, run.speed)
    return {**accuracy_report(logits_NL, labels_N, ds.class_names, ds.hierarchy), "skipped": skipped}


def _save(
    cfg: ClassifierConfig,
    out: Path,
    run: Run,
    ds: Dataset,
    pre: Preprocess,
    final: dict[str, Any],
    threads: int,
    splits: tuple[str, str],
) -> None:
    """Model + processor, then visae_classifier.json, then the marker saying complete."""
    device = _device(run.model)
    save_classifier(out, run.model.to("cpu"), pre)
    meta = {
        "format_version": 1,
        "data": cfg.data,
        "splits": {"train": splits[0], "val": splits[1]},
        "class_names": list(ds.class_names),
        "hierarchy": ds.hierarchy.to_json() if ds.hierarchy else None,
        "init": cfg.init,
        "epochs": run.epoch,
        "train_top1": run.rows[-1]["train_top1"],
        "val_top1": final["top1"],
        "val": {k: final[k] for k in ("n", "top1", "top5", "levels") if k in final},
        "train_seconds": round(run.seconds, 2),
        "preprocess": pre.model_dump(mode="json"),
        "compute": {"dtype": "bfloat16" if run.speed.bf16 else "float32", "channels_last": run.speed.channels_last,
                    "step_ms": run.speed.step_ms, "threads": threads, "device": str(device)},  # fmt: skip
        "config": cfg.model_dump(mode="json"),
    }
    write_json(out / META, meta)
    write_marker(out, KIND, complete=True, data=cfg.data, val_top1=final["top1"])
    (out / CHECKPOINT).unlink(missing_ok=True)
