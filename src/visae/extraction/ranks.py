"""Distributed extraction: ``torchrun --nproc-per-node N -m visae extract ...``.

Each rank extracts a contiguous run of whole batches of the image order (``World.slice`` over the
batches), so every forward pass sees exactly the images it sees in a single-process run and the
tokens are bit-identical. Who writes what:

* rank 0 holds ``OUT``'s lock (and each layer store's, for several layers) from start to end, and
  opens ``OUT`` as a single-process run does: a complete store with the same settings is reused,
  ``--force`` wipes it, otherwise an empty store is created (or found) to merge into;
* rank R writes a private store in ``OUT/.ranks/R`` (several layers: a store-set there), locked by
  R; it is an ordinary resumable store of its share, whose fingerprint also records the share;
* once every rank has finished, rank 0 merges: the shard and index files of the ranks are linked
  into ``OUT`` in rank order under consecutive shard numbers (their checksums unchanged), each image
  table is rewritten with the token offsets of the merged store, the statistics are combined exactly
  (Chan's pairwise merge of count, mean and M2, per token kind too) and the skipped images are
  concatenated; ``metadata.json`` (complete) is the commit point, after which ``OUT/.ranks`` goes.

A killed job is resumed by rerunning the same command: each rank's store continues where it
stopped, and a merge that did not commit is redone from scratch (the rank stores are intact until
the commit). The ranks meet at a few points (``_together``); a rank that fails there tells the
others, and a rank that stops answering makes them stop with visae.distributed's one-line error.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, TypeVar

import torch

from visae.atomic import atomic_path, write_json
from visae.distributed import World
from visae.errors import VisaeError
from visae.extraction.config import ExtractConfig
from visae.extraction.outputs import Target, store_paths
from visae.lock import locked
from visae.progress import info
from visae.store.format import HashingWriter, KindStats, ShardInfo, Stats, hash_file, load_meta, shard_name
from visae.store.reader import Store, stats_file
from visae.store.stats import RunningStats
from visae.store.writer import StoreWriter

RANKS_DIR = ".ranks"
"""Sub-folder of --out holding each rank's share while a distributed extraction runs."""

T = TypeVar("T")


def extract_ranks(cfg: ExtractConfig, backbone: Any, w: World) -> Store | dict[str, Store]:
    """This rank's part of a distributed extraction; every rank returns the merged store(s)."""
    from visae.extraction.run import _open_targets, _plan, _run_targets

    if not w.main:
        os.environ["VISAE_QUIET"] = "1"  # progress and log lines from rank 0 only
    if cfg.device in ("auto", "cuda") and torch.cuda.is_available():
        cfg = cfg.model_copy(update={"device": f"cuda:{w.local_rank}"})  # one GPU per rank
    out = Path(cfg.out)
    with ExitStack() as held:
        if w.main:
            held.enter_context(locked(out))
        plan = _together(w, "loading the model and the data", lambda: _plan(cfg, backbone, check=w.main))
        if getattr(plan.bb, "position_match", False):
            plan.weights = w.broadcast_object(plan.weights, "sharing the weights check")
        layers = plan.layers

        top: list[Target] = []  # rank 0: the merged store(s)

        def open_top() -> tuple[str, dict[str, str]]:
            if not w.main:
                return "", {}
            top.extend(_open_targets(cfg, plan, store_paths(cfg, layers), held, plan.order))
            state = _top_state(top)
            if state == "run":
                _drop_other_world(out / RANKS_DIR, w.size)
            return state, {t.layer: str(t.path) for t in top}

        state, paths = w.broadcast_object(_together(w, "opening --out", open_top), "sharing the state of --out")
        if state == "run":
            n_batches = -(-len(plan.order) // cfg.batch_size)
            a, b = w.slice(n_batches)
            share = plan.order[a * cfg.batch_size : b * cfg.batch_size]
            mine = cfg.model_copy(update={"out": out / RANKS_DIR / str(w.rank)})

            def run_share() -> None:
                with ExitStack() as mine_held:
                    mine_held.enter_context(locked(mine.out))
                    share_of = {"ranks": f"{w.rank} of {w.size}", "share": [int(a * cfg.batch_size), int(len(share))]}
                    targets = _open_targets(mine, plan, store_paths(mine, layers), mine_held, share, share_of)
                    _run_targets(mine, plan, targets, share, allow_empty=True)

            _together(w, "extracting", run_share)
            _together(w, "merging the ranks' shares", lambda: _merge_all(top, out, w.size, cfg) if w.main else None)
        elif w.main:
            shutil.rmtree(out / RANKS_DIR, ignore_errors=True)  # a merge that committed but did not clean up
    stores = {layer: Store(paths[layer]) for layer in layers}
    return stores[layers[0]] if len(layers) == 1 else stores


def _top_state(top: list[Target]) -> str:
    """'done' when every merged store is complete, 'run' when none has a shard yet; refused otherwise."""
    if all(t.writer.meta.complete for t in top):
        return "done"
    begun = [t for t in top if not t.writer.meta.complete and t.writer.meta.shards]
    if begun:
        t = begun[0]
        raise VisaeError(
            f"{t.path} holds a single-process extraction in progress ({len(t.writer.meta.shards)} shards)",
            "finish it with the same command without torchrun, or pass --force to redo it on all ranks",
        )
    return "run"


def _drop_other_world(ranks: Path, size: int) -> None:
    """Discard the shares of an interrupted run with another number of ranks (they cannot be resumed)."""
    sizes = set()
    for f in ranks.glob("**/metadata.json") if ranks.is_dir() else ():
        try:
            sizes.add(str(json.loads(f.read_text()).get("config", {}).get("ranks", "")).rpartition(" of ")[2])
        except (OSError, ValueError, AttributeError):
            sizes.add("?")
    if sizes - {str(size)}:
        info(f"{ranks.parent}: discarding the shares of an interrupted run on {', '.join(sorted(sizes))} rank(s)")
        shutil.rmtree(ranks)


def _together(w: World, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank, then meet: a rank's failure stops all of them (its own error on it,
    a one-line 'rank R failed' on the others)."""
    error: BaseException | None = None
    result: Any = None
    try:
        result = fn()
    except Exception as e:  # told to the others, then raised here
        error = e
    told = getattr(error, "message", None) or (f"{type(error).__name__}: {error}" if error else None)
    failed = [(r, m) for r, m in enumerate(w.gather_objects(told, what)) if m is not None]
    if error is not None:
        raise error
    if failed:
        r, m = failed[0]
        raise VisaeError(f"{what}: rank {r} failed ({str(m).splitlines()[0][:200]})",
                         "fix it (its own error is in its log) and rerun the same command to resume")  # fmt: skip
    return result


# ---------------------------------------------------------------- merge


def _merge_all(top: list[Target], out: Path, size: int, cfg: ExtractConfig) -> None:
    ranks = out / RANKS_DIR
    for t in top:
        rel = t.path.relative_to(out) if t.path != out else Path()
        merge_shares(t.writer, [ranks / str(r) / rel for r in range(size)], cfg)
    shutil.rmtree(ranks, ignore_errors=True)
    info(f"merged the shares of {size} ranks -> {', '.join(str(t.path) for t in top)}")


def merge_shares(top: StoreWriter, parts: list[Path], cfg: ExtractConfig) -> None:
    """Commit the complete stores ``parts`` (consecutive shares of the image order) as the empty store
    ``top``: shards renumbered in order, image tables shifted, statistics merged exactly."""
    meta, path = top.meta, top.path
    stats, by_kind = RunningStats(meta.d), {c: RunningStats(meta.d) for c in top.by_kind}
    shards: list[ShardInfo] = []
    skipped = []
    n_tokens = n_images = 0
    for part in parts:
        pm = load_meta(part)
        if not pm.complete:
            raise VisaeError(f"{part} is unfinished", "rerun the same torchrun command to finish it")
        base = n_tokens
        for s in pm.shards:
            info_ = ShardInfo(name=shard_name(len(shards)), n_tokens=s.n_tokens, n_images=s.n_images, checksums={})
            src, dst = s.files, info_.files
            for role in ("data", "index"):
                _link(part / src[role], path / dst[role])
                info_.checksums[dst[role]] = s.checksums[src[role]]
            table = json.loads((part / src["images"]).read_text())
            table["token_start"] = [int(v) + base for v in table["token_start"]]
            info_.checksums[dst["images"]] = _write_hashed(path / dst["images"], json.dumps(table).encode(), meta.checksum)
            shards.append(info_)
            n_tokens += s.n_tokens
            n_images += s.n_images
        if pm.stats.file:
            stats = stats.merged(RunningStats.load(stats_file(part, pm)))
            if by_kind:
                theirs = RunningStats.load_by_kind(stats_file(part, pm))
                by_kind = {c: st.merged(theirs[c]) if c in theirs else st for c, st in by_kind.items()}
        skipped.extend(pm.skipped)
    if n_tokens == 0:
        from visae.extraction.run import _nothing_stored

        _nothing_stored(cfg, SimpleNamespace(name=meta.split), skipped, left="the store is left unfinished")
    merged = f"stats_{len(shards):06d}.safetensors"
    stats.save(path / merged, by_kind)
    meta.shards, meta.n_tokens, meta.n_images, meta.skipped = shards, n_tokens, n_images, skipped
    meta.stats = Stats(file=merged, checksum=hash_file(path / merged, meta.checksum), n=stats.n, mean_sq_norm=stats.mean_sq_norm,
                       by_kind={str(c): KindStats(n=st.n, mean_sq_norm=st.mean_sq_norm) for c, st in by_kind.items()})  # fmt: skip
    meta.complete = True
    write_json(path / "metadata.json", meta.model_dump(mode="json"))  # the commit point


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy where links are not supported); the source stays."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _write_hashed(f: Path, data: bytes, algo: str) -> str:
    with atomic_path(f) as tmp, open(tmp, "wb") as fh:
        w = HashingWriter(fh, algo)
        w.write(data)
    return w.digest()
