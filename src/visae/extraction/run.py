"""The extract stage: images -> backbone -> tokens of one or more layers -> activation stores.

``extract(ExtractConfig(...))`` runs one forward pass per batch for all requested layers
and appends each layer's tokens to its store. Batches are fixed chunks of split indices
(``batch_size`` apart from 0), so a resumed run recomputes exactly the batches of an
uninterrupted one and its stores are bit-identical.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.artifact import clear
from visae.errors import VisaeError
from visae.extraction.config import ExtractConfig
from visae.extraction.outputs import Target, new_meta, open_writer, store_paths
from visae.identity import dataset_identity
from visae.lock import locked
from visae.progress import info, make_progress
from visae.store.format import INDEX_DTYPE
from visae.store.reader import Store


def extract(cfg: ExtractConfig, *, backbone: Any = None) -> Store | dict[str, Store]:
    """Extract, resume or confirm the stores of ``cfg``; one Store, or layer -> Store for several layers.

    ``backbone``: the already loaded Backbone of ``cfg.model`` (saves loading it twice). ``--out`` is
    locked from the start (a second writer is refused before it loads a model) to the end. Under
    torchrun the ranks share the work (``visae.extraction.ranks``).
    """
    from visae.distributed import world

    w = world()
    if w.distributed:
        from visae.extraction.ranks import extract_ranks

        return extract_ranks(cfg, backbone, w)
    with locked(cfg.out):
        return _extract(cfg, backbone)


def _extract(cfg: ExtractConfig, backbone: Any) -> Store | dict[str, Store]:
    plan = _plan(cfg, backbone)
    with ExitStack() as held:  # and each layer's store of a store-set, until the end
        targets = _open_targets(cfg, plan, store_paths(cfg, plan.layers), held, plan.order)
        _run_targets(cfg, plan, targets, plan.order)
    stores = {t.layer: Store(t.path) for t in targets}
    return stores[plan.layers[0]] if len(plan.layers) == 1 else stores


@dataclass
class _Plan:
    """What every extraction of ``cfg`` works from: the backbone, the layers, the split and its image order."""

    bb: Any
    layers: list[str]
    ds: Any
    split: Any
    order: np.ndarray
    preprocess: dict[str, Any]
    data_fp: str
    weights: dict[str, Any] | None


def _plan(cfg: ExtractConfig, backbone: Any, check: bool = True) -> _Plan:
    """Load the backbone and the split; ``check``: run the position-match weights check (else left None)."""
    from visae.data.base import open_dataset

    bb = backbone if backbone is not None else load_backbone(cfg)
    layers = [bb.resolve_layer(name) for name in cfg.layers]
    if len(set(layers)) != len(layers):
        raise VisaeError(f"--layer names the same layer twice ({', '.join(cfg.layers)})", "name each layer once")
    ds = open_dataset(cfg.data)
    split = ds.split(cfg.split or ds.default_split("train"))
    order = image_order(cfg, len(split))
    if len(order) == 0:
        raise VisaeError(f"split '{split.name}' of {cfg.data} has no images", "choose another --split or --data")
    preprocess = bb.preprocess.model_dump(mode="json")
    data_fp = dataset_identity(ds, [split])["fingerprint"]
    weights = check_weights(bb, ds, split, order) if check and getattr(bb, "position_match", False) else None
    return _Plan(bb, layers, ds, split, order, preprocess, data_fp, weights)


def _open_targets(cfg: ExtractConfig, plan: _Plan, paths: dict[str, Path], held: ExitStack, order: np.ndarray,
                  config: dict[str, Any] | None = None) -> list[Target]:  # fmt: skip
    """Lock and open (create, resume or confirm) each layer's store of ``paths`` for the images ``order``;
    ``config`` adds entries to each store's resume fingerprint."""
    targets = []
    for layer, path in paths.items():
        held.enter_context(locked(path))
        layout = plan.bb.layout(layer)
        meta = new_meta(cfg, layer, layout, plan.preprocess, plan.split.name, len(order), plan.data_fp, plan.weights)
        meta.config.update(config or {})
        targets.append(Target(layer, path, layout, open_writer(path, meta, cfg)))
    return targets


def _run_targets(cfg: ExtractConfig, plan: _Plan, targets: list[Target], order: np.ndarray,
                 allow_empty: bool = False) -> None:  # fmt: skip
    """Extract the images ``order`` into the unfinished ``targets`` (resuming each where it stopped).

    ``allow_empty``: a store may end without tokens (one rank's share of a distributed extraction)."""
    todo = [t for t in targets if not t.writer.meta.complete]
    if not todo:
        return
    planned = len(order)
    if planned == 0:
        for t in todo:
            t.writer.close()
        return
    first = min(t.writer.resume_point() for t in todo)  # a split index
    start = int(np.searchsorted(order, first)) // cfg.batch_size * cfg.batch_size  # a position in ``order``
    for t in todo:
        t.writer.resume_from(int(order[start]) if start < planned else int(order[-1]) + 1)
    _extract_batches(cfg, plan.bb, plan.split, todo, start, order, allow_empty)


def image_order(cfg: ExtractConfig, n: int) -> np.ndarray:
    """Split indices to extract, increasing: every image, or a seeded random ``max_images`` of them
    (not the first N: a split sorted by class would give the first classes only)."""
    if cfg.max_images is None or cfg.max_images >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([cfg.seed, 0x5B5E7])
    return np.sort(rng.choice(n, size=cfg.max_images, replace=False)).astype(np.int64)


def load_backbone(cfg: ExtractConfig) -> Any:
    from visae.backbones.base import load_backbone as load

    return load(cfg.model, random_init=cfg.random_init, device=cfg.device, allow_position_match=cfg.allow_position_match)


def check_weights(bb: Any, ds: Any, split: Any, order: np.ndarray) -> dict[str, Any]:
    """Check position-matched weights on the labelled images being extracted; the record for the metadata."""
    from visae.backbones.check import check_weights as check
    from visae.backbones.check import labelled_images

    images, labels = labelled_images(split, ds.class_names, order, bb)
    return check(bb, images, labels).to_json()


def _device_of(bb: Any) -> torch.device:
    """Where the backbone's weights are (a stand-in without a ``device`` runs on the CPU)."""
    return getattr(bb, "device", None) or torch.device("cpu")


def _extract_batches(cfg: ExtractConfig, bb: Any, split: Any, todo: list[Target], start: int, order: np.ndarray,
                     allow_empty: bool = False) -> None:  # fmt: skip
    """Extract the images ``order[start:]`` (split indices, increasing)."""
    from visae.data.loader import ImageLoader

    planned = len(order)
    on_gpu = _device_of(bb).type == "cuda"
    loader = ImageLoader(split, bb.preprocess, cfg.batch_size, indices=order[start:],
                         num_workers=cfg.workers, pin_memory=on_gpu)  # fmt: skip
    next_pos, n_tokens, t0 = start, 0, time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task(f"extracting {len(todo)} layer(s)", total=planned, completed=start, info="")
        for batch in loader:
            idx_B = batch.indices_B.numpy().astype(np.int64)
            pos = int(np.searchsorted(order, idx_B[-1])) + 1
            _record_unreadable(split, loader.skipped, order[next_pos:pos].tolist(), set(idx_B.tolist()), todo)
            next_pos = pos
            n_tokens += _extract_batch(cfg, bb, batch, idx_B, todo)
            dt = max(time.perf_counter() - t0, 1e-9)
            rate = f"{(next_pos - start) / dt:.1f} img/s, {n_tokens / dt:,.0f} tok/s"
            progress.update(task, completed=next_pos, info=rate)
            _test_fault()
        _record_unreadable(split, loader.skipped, order[next_pos:].tolist(), set(), todo)
        progress.update(task, completed=planned)
    if not allow_empty and n_tokens == 0 and all(t.writer.meta.n_tokens == 0 for t in todo):
        skipped = todo[0].writer.meta.skipped
        for t in todo:  # nothing committed: leave no store behind, so a rerun after fixing the files starts afresh
            t.writer.close()
            clear(t.path)
        _nothing_stored(cfg, split, skipped)
    for t in todo:
        t.writer.close()
    dt = time.perf_counter() - t0
    info(f"extracted {planned - start} images, {n_tokens:,} tokens (all layers) in {dt:.1f} s -> {', '.join(str(t.path) for t in todo)}")


def _extract_batch(cfg: ExtractConfig, bb: Any, batch: Any, idx_B: np.ndarray, todo: list[Target]) -> int:
    """Forward one batch, check it, and append every layer's tokens; returns tokens appended.

    On a GPU the pixels travel from pinned memory without blocking, the forward runs under
    bf16 autocast, and each layer's tokens come back to the CPU already in the store's dtype.
    """
    from visae.backbones.tokens import to_tokens

    device = _device_of(bb)
    pixels_BCHW = batch.pixels_BCHW.to(device, non_blocking=True)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        outs = bb.capture(pixels_BCHW, [t.layer for t in todo])
    per_layer = []
    for t in todo:
        tokens_TD, index = to_tokens(outs[t.layer], t.layout, select=cfg.tokens)
        acts_TD = t.writer.storage.cast(tokens_TD).cpu()  # the writer (checksums, stats) works on the CPU
        per_layer.append((t, acts_TD, tokens_TD, np.asarray(index.image, dtype=np.int64), index))
    bad = _nonfinite_images(cfg, batch, per_layer)
    ids = {int(i): s for i, s in zip(idx_B.tolist(), batch.ids)}
    labels_B = batch.labels_B.numpy()
    total = 0
    for t, acts_TD, _, image_T, index in per_layer:
        keep_T = ~np.isin(image_T, list(bad)) if bad else np.ones(len(image_T), dtype=bool)
        rows_T = np.empty(int(keep_T.sum()), dtype=INDEX_DTYPE)
        rows_T["image"] = idx_B[image_T[keep_T]]
        rows_T["kind"] = np.asarray(index.kind)[keep_T]
        rows_T["y"] = np.asarray(index.y)[keep_T]
        rows_T["x"] = np.asarray(index.x)[keep_T]
        rows_T["label"] = labels_B[image_T[keep_T]]
        for b, why in sorted(bad.items()):
            t.writer.skip_image(int(idx_B[b]), batch.ids[b], why)
        t.writer.add(acts_TD[torch.from_numpy(keep_T)] if bad else acts_TD, rows_T, ids)
        total += len(rows_T)
    return total


def _nonfinite_images(cfg: ExtractConfig, batch: Any, per_layer: list) -> dict[int, str]:
    """Batch positions of images with NaN/Inf tokens (after rounding to the store dtype) -> reason."""
    bad: dict[int, str] = {}
    for t, acts_TD, raw_TD, image_T, _ in per_layer:
        finite_T = torch.isfinite(acts_TD).all(dim=1).cpu().numpy()
        if finite_T.all():
            continue
        overflow = bool(torch.isfinite(raw_TD[torch.from_numpy(~finite_T).to(raw_TD.device)]).all())
        why = f"{cfg.dtype} overflow at layer {t.layer}" if overflow else f"non-finite activations at layer {t.layer}"
        for b in np.unique(image_T[~finite_T]).tolist():
            bad.setdefault(int(b), why)
    if bad and not cfg.skip_nonfinite:
        ids = [batch.ids[b] for b in sorted(bad)]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        reason = next(iter(bad.values()))
        hint = "pass --skip-nonfinite to leave those images out (they are listed in the store's metadata)"
        if "overflow" in reason:
            hint = "the values exceed the fp16 range: use --dtype bf16 or fp32, or " + hint.removeprefix("pass ")
        raise VisaeError(f"NaN/Inf activations ({reason}) for {len(ids)} image(s): {shown}", hint + "; then rerun with --resume")
    return bad


def _nothing_stored(cfg: ExtractConfig, split: Any, skipped: list, left: str = "nothing was written") -> None:
    """Refuse to mark a store complete that holds no image (every one unreadable, or NaN and skipped)."""
    first = f" (first: {skipped[0].id}: {skipped[0].reason})" if skipped else ""
    raise VisaeError(
        f"none of the {len(skipped)} images of split '{split.name}' of {cfg.data} could be stored{first}; "
        f"{left}",
        f"check the files (`visae data info {cfg.data}` counts the readable ones), or choose another --data or --split",
    )


def _record_unreadable(split: Any, skipped: list, span: Iterable[int], seen: set[int], todo: list[Target]) -> None:
    """Images of ``span`` missing from the batches were skipped by the loader: record them."""
    missing = [i for i in span if i not in seen]
    if not missing:
        return
    reasons = dict(skipped)
    for i in missing:
        image_id = split.image_id(i)
        for t in todo:
            t.writer.skip_image(i, image_id, reasons.get(image_id, "unreadable image"))


_batches_done = 0


def _test_fault() -> None:
    """Tests only: ``VISAE_TEST_STALL=RANK:N`` makes that torchrun rank stop answering after N batches
    (a hung or lost rank, as the other ranks see it)."""
    global _batches_done
    spec = os.environ.get("VISAE_TEST_STALL")
    if not spec:
        return
    _batches_done += 1
    rank, n = (int(v) for v in spec.split(":"))
    if rank == int(os.environ.get("RANK", "0")) and _batches_done >= n:
        time.sleep(3600)
