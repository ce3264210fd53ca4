"""``train(cfg) -> Run``: train one or several SAEs from one pass over a token source.

Each batch is normalised once (``(x - mean) * scale``, store statistics) and fed to every
SAE of the run. Checkpoints are atomic and carry the data position, so ``--resume``
after a kill reaches the same weights as an uninterrupted run. At the end each SAE is
saved, normalisation folded in, as a SAELens folder ``RUN/saes/NAME``.

Under ``torchrun --nproc-per-node N`` (``visae.distributed``) the run is split by data (the default:
every rank streams the same global batches of ``--batch-size`` tokens and trains on its own contiguous
``batch_size / N`` rows of each; gradients, float buffers and fired-latent counts are all-reduced every
step, so weights, optimiser state and dead-latent counters stay identical on every rank), by SAE or by
latent (``--parallel``, ``placement.py``). Only rank 0 writes into the run directory; its checkpoints
hold whole SAEs and count steps of the global batch, so any world size and mode resumes them.
"""

from __future__ import annotations

import copy
import json
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from visae.artifact import prepare_out, read_marker, write_marker
from visae.atomic import write_json, write_text, write_with
from visae.device import resolve_device
from visae.distributed import World, world
from visae.errors import VisaeError
from visae.identity import check_same, store_identity
from visae.lock import locked
from visae.progress import info, make_progress
from visae.sae.base import SAE, create_sae
from visae.sae.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from visae.sae.evaluate import evaluate
from visae.sae.guards import plan
from visae.sae.importers import RUN_KIND, RUN_SAES, load_sae, run_sae_dirs
from visae.sae.init import init_b_dec, sample_tokens
from visae.sae.member import Member
from visae.sae.placement import Placement
from visae.sae.saelens import save_saelens
from visae.sae.source import TokenSource
from visae.sae.train_config import TrainConfig

CONFIG_FILE = "train.json"
INPUTS_FILE = "inputs.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
BULKY_STORE_FIELDS = {"shards", "skipped", "stats", "config"}
"""Store metadata left out of cfg.json (per-shard tables; the store keeps them)."""


@dataclass
class Run:
    """A finished (or resumable) training run directory."""

    path: Path
    names: list[str] = field(default_factory=list)

    def load(self, name: str | None = None) -> SAE:
        return load_sae(self.path, name)

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def open_source(store: str) -> TokenSource:
    try:
        from visae.store import Store  # type: ignore[attr-defined]
    except ImportError:
        raise VisaeError("the activation store reader (visae.store) is not installed", "reinstall visae") from None
    return Store(store).check()  # every shard file against its checksum, before the run directory is touched


def train(cfg: TrainConfig, source: TokenSource | None = None) -> Run:
    """Train the SAEs of ``cfg`` on ``source`` (default: the store at ``cfg.store``).

    A share of the images (``cfg.holdout``) or another store (``cfg.eval_store``) is kept out
    of training; the inference-time SAE is evaluated on it during and after training. The run
    directory is locked throughout (one writer at a time); a resume checks that it reads the
    store the run began with (``RUN/inputs.json``).
    """
    if os.environ.get("WORLD_SIZE", "1") in ("", "0", "1"):
        with locked(cfg.out):
            return _train(cfg, source, world())
    w = world(resolve_device(cfg.device))
    if not w.main:
        os.environ["VISAE_QUIET"] = "1"  # rank 0 speaks for the job (errors still print on every rank)
    with ExitStack() as stack:
        together(w, "train: lock the run directory", lambda: stack.enter_context(locked(cfg.out)) if w.main else None)
        return _train(cfg, source, w)


def _train(cfg: TrainConfig, source: TokenSource | None, w: World) -> Run:
    notes: list[str] = []  # plan's choices and warnings, said once the run directory and device are settled

    def setup() -> tuple[Any, ...]:
        src = source if source is not None else open_source(cfg.store)
        train_src, eval_src = split_source(src, cfg)
        planned = plan(cfg, train_src, src.d, notes)  # defaults fitted to the store, warnings, refusals
        tokens = planned.training_tokens or len(train_src)
        total_steps = tokens // planned.batch_size
        if planned.batch_size > len(train_src) or total_steps == 0:
            raise VisaeError(
                f"{tokens} training tokens and {len(train_src)} tokens to train on make no full batch of {planned.batch_size}",
                "lower --batch-size or raise --training-tokens",
            )
        Placement(planned, w).check(planned, src.d)
        done, unfinished = _earlier_run(planned)
        if unfinished:
            info(f"{planned.out}: continuing the interrupted run (same settings; --force starts it over)")
            planned = planned.model_copy(update={"resume": True})
        return src, train_src, eval_src, planned, total_steps, done

    source, train_src, eval_src, cfg, total_steps, done = together(w, "train: set up", setup)
    if done is not None:
        return done

    def begin() -> tuple[Path, dict[str, Any] | None]:  # rank 0 alone touches the run directory
        if not w.main:
            return Path(cfg.out), None
        out = prepare_out(cfg.out, RUN_KIND, force=cfg.force, resume=cfg.resume)
        return out, (_check_resume(out, cfg, source) if cfg.resume else None)

    out, state = together(w, "train: prepare the run directory", begin)
    if w.distributed:
        out = Path(w.broadcast_object(str(out), "train: prepare the run directory"))
        resumed = w.broadcast_object(state is not None, "train: prepare the run directory")
        if resumed and not w.main:
            state = together(w, "train: read the checkpoint", lambda: load_checkpoint(out))
        elif resumed:
            together(w, "train: read the checkpoint", lambda: None)
    device = resolve_device(cfg.device)
    for note in notes:
        info(note)
    if w.distributed and device.type == "cuda":
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    mean_D, scale = _normalisation(train_src, cfg, device)
    dead_tokens = dead_window(cfg, total_steps * cfg.batch_size)
    torch.manual_seed(cfg.seed)
    place = Placement(cfg, w)
    members = [Member(hp, place.build(create_sae(hp.spec(source.d))).to(device if place.trains(i) else "cpu"), cfg,
                      total_steps, dead_tokens, world=place.member_world()) for i, hp in enumerate(cfg.saes)]  # fmt: skip
    if state is None:
        if w.main:
            write_json(out / CONFIG_FILE, cfg.model_dump(mode="json"))
            write_json(out / INPUTS_FILE, _inputs(cfg, source))
            write_marker(out, RUN_KIND, saes=[m.name for m in members], complete=False)
        _init(members, train_src, cfg, mean_D, scale)
        if w.main:
            _truncate_metrics(out, 0)  # a --resume before the first checkpoint restarts at step 0
        start = 0
    else:
        start = _restore(members, state, source, out, w)
    check_same_weights(members, w)
    evaluator = HeldOut(eval_src, mean_D, scale, cfg, total_steps) if eval_src is not None else None
    _loop(members, train_src, cfg, out, start, total_steps, mean_D, scale, evaluator, place)
    layout = place.describe(members)
    place.gather(members)
    if w.main:
        _finish(members, source, cfg, out, mean_D, scale, total_steps, evaluator, layout)
    return Run(out, [m.name for m in members])


def together(w: World, what: str, fn: Any) -> Any:
    """``fn()`` on every rank, then agree on how it went: when it raised on any rank, every rank stops
    with that rank's error (its own where it raised) instead of waiting for the others until the
    timeout. In a world of one, just ``fn()``."""
    if not w.distributed:
        return fn()
    try:
        result, failed = fn(), None
    except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks heard of it
        result, failed = e, (e.message, e.hint) if isinstance(e, VisaeError) else (f"{type(e).__name__}: {e}", None)
    outcomes = w.gather_objects(failed, what)
    if failed is not None:
        raise result
    for rank, bad in enumerate(outcomes):
        if bad is not None:
            raise VisaeError(f"rank {rank} stopped ({what}): {bad[0]}", bad[1])
    return result


@torch.no_grad()
def check_same_weights(members: list[Member], w: World) -> None:
    """Refuse to train when the ranks' SAEs differ (a cheap checksum: per SAE, the sum and the sum of
    squares of its parameters and buffers, min- and max-reduced over the ranks; only b_dec of a
    latent-sharded SAE, whose other weights are slices)."""
    if not w.distributed:
        return
    tensors = [t for m in members for key, t in m.sae.state_dict().items()
               if t.is_floating_point() and (m.shard is None or key == "b_dec")]  # fmt: skip
    sums = torch.tensor([[float(t.double().sum()), float(t.double().pow(2).sum())] for t in tensors],
                        dtype=torch.float64).flatten()  # fmt: skip
    dev = members[0].sae.W_dec.device if w.backend == "nccl" else torch.device("cpu")
    lo, hi = sums.to(dev), sums.clone().to(dev)
    w.all_reduce(lo, "train: compare the ranks' initial weights", op="min")
    w.all_reduce(hi, "train: compare the ranks' initial weights", op="max")
    if not torch.equal(lo, hi):
        raise VisaeError(f"the ranks start from different SAE weights (rank {w.rank} differs from another)",
                         "every rank must run the same visae and torch versions with the same --seed")  # fmt: skip


def _earlier_run(cfg: TrainConfig) -> tuple[Run | None, bool]:
    """What to do with the run already in ``cfg.out`` (one read of its marker and train.json): (the finished run,
    reused when trained with these very settings, False), (None, True) to continue an unfinished one begun with
    them (as ``--resume`` does, like an interrupted extraction), or (None, False): train, or let ``prepare_out``
    decide (no run there, no readable train.json, or --force / --resume said what to do). A finished run trained
    with other settings is refused, naming what changed."""
    out = Path(cfg.out)
    marker = read_marker(out) if out.is_dir() and not (cfg.force or cfg.resume) else None
    if not marker or marker.get("kind") != RUN_KIND:
        return None, False
    try:
        before = TrainConfig.model_validate(json.loads((out / CONFIG_FILE).read_text())).fingerprint()
    except (OSError, ValueError):
        return None, False
    now = cfg.fingerprint()
    if not marker.get("complete"):
        return None, before == now
    if before != now:
        changed = ", ".join(k for k in now if before.get(k) != now[k]) or "settings"
        raise VisaeError(f"{out} already holds a finished run trained with other settings ({changed} changed)",
                         "pass --force to replace it, or choose another --out")  # fmt: skip
    info(f"{out}: already trained (same settings); pass --force to redo it")
    return Run(out, list(marker.get("saes") or [])), False


def split_source(source: TokenSource, cfg: TrainConfig) -> tuple[TokenSource, TokenSource | None]:
    """(training tokens, held-out tokens or None): the token kinds asked for, held-out images left out."""
    if not hasattr(source, "images"):  # an in-memory TensorSource: hold out random rows
        if cfg.tokens not in (None, "all", "patch"):
            raise VisaeError(f"--tokens {cfg.tokens}: an in-memory token source has no token kinds", "drop --tokens")
        if cfg.eval_store is not None:
            return source, open_source(cfg.eval_store)
        return source.split(cfg.holdout, cfg.eval_tokens, cfg.seed) if cfg.holdout > 0 else (source, None)
    from visae.store.select import Selection, holdout_images, token_kinds
    from visae.store.view import StoreView

    selection = Selection(token_kinds(source, cfg.tokens))
    if cfg.eval_store is not None:
        other = open_source(cfg.eval_store)
        check_same_layer(source, other)
        picked = holdout_images(other, 1.0, cfg.eval_tokens, cfg.seed)
        return StoreView(source, selection), StoreView(other, Selection(token_kinds(other, cfg.tokens)).only(picked))
    held = holdout_images(source, cfg.holdout, cfg.eval_tokens, cfg.seed)
    if not len(held):
        if cfg.holdout > 0:
            info(f"no held-out evaluation: the store has {source.n_images} image(s)")
        return StoreView(source, selection), None
    return StoreView(source, selection.without(held)), StoreView(source, selection.only(held))


def check_same_layer(store: Any, other: Any) -> None:
    """Refuse an evaluation store of another backbone, layer or width than the training store."""
    a, b = store.meta, other.meta
    for what, x, y in (("backbone", a.backbone, b.backbone), ("layer", a.layer, b.layer), ("d", a.d, b.d)):
        if x != y:
            raise VisaeError(f"--eval-store {other.path} has {what} {y!r}, the training store {x!r}",
                             "extract the evaluation split with the same --model and --layer")  # fmt: skip


def dead_window(cfg: TrainConfig, run_tokens: int) -> int:
    """Tokens without firing after which a latent counts as dead (and AuxK trains it)."""
    if cfg.dead_tokens is None:
        return max(cfg.batch_size, int(cfg.dead_fraction * run_tokens))
    if cfg.dead_tokens >= run_tokens:
        info(f"warning: --dead-tokens {cfg.dead_tokens:,} is not shorter than the run ({run_tokens:,} tokens): no latent "
             f"can be counted dead during training (AuxK never runs); the held-out pass at the end still counts them")
    return cfg.dead_tokens


def _normalisation(source: TokenSource, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, float]:
    if not cfg.normalize:
        return torch.zeros(source.d, device=device), 1.0
    mean_D = torch.as_tensor(source.mean_D, dtype=torch.float32).to(device)
    scale = float(source.scale)
    if not np.isfinite(scale) or scale <= 0 or not bool(torch.isfinite(mean_D).all()):
        raise VisaeError("the store's statistics (mean, scale) are not finite", "recompute them or pass normalize=false")
    return mean_D, scale


def _init(members: list[Member], source: TokenSource, cfg: TrainConfig, mean_D, scale) -> None:
    sample = sample_tokens(source, cfg.median_sample, cfg.seed).to(mean_D.device)
    sample = (sample - mean_D) * scale
    if not bool(torch.isfinite(sample).all()):
        raise VisaeError("the store holds NaN or inf activations", "re-extract the store or drop the bad shards")
    for m in members:
        init_b_dec(m.sae, sample)


def _check_resume(out: Path, cfg: TrainConfig, source: TokenSource) -> dict[str, Any] | None:
    f = out / CONFIG_FILE
    if not f.is_file():
        return None
    saved = TrainConfig.build(**json.loads(f.read_text()))
    old, new = saved.fingerprint(), cfg.fingerprint()
    changed = sorted(k for k in new if old.get(k) != new.get(k))
    if changed:
        raise VisaeError(
            f"cannot resume {out}: the config changed ({', '.join(changed)})",
            "rerun with the original settings, or pass --force to start a new run",
        )
    _check_inputs(out, cfg, source)
    return load_checkpoint(out) or None


def _inputs(cfg: TrainConfig, source: TokenSource) -> dict[str, Any]:
    """RUN/inputs.json: the identities of the stores the run reads (None for an in-memory source)."""
    return {"store": store_identity(source),
            "eval_store": store_identity(open_source(cfg.eval_store)) if cfg.eval_store else None}  # fmt: skip


def _check_inputs(out: Path, cfg: TrainConfig, source: TokenSource) -> None:
    """Refuse to resume against another store than the run began with (same path, other content)."""
    f, now = out / INPUTS_FILE, _inputs(cfg, source)
    if not f.is_file():  # a run begun before visae recorded its inputs: from now on
        write_json(f, now)
        return
    try:
        recorded = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        raise VisaeError(f"{f} is unreadable", "pass --force to start a new run") from None
    check_same(recorded.get("store"), now["store"], "store", out)
    check_same(recorded.get("eval_store"), now["eval_store"], "--eval-store", out)


def _restore(members: list[Member], state: dict[str, Any], source: TokenSource, out: Path, w: World) -> int:
    for m in members:
        saved = state["members"][m.name]
        d_saved = saved["sae"]["b_dec"].shape[0]
        if d_saved != source.d:
            raise VisaeError(
                f"cannot resume {out}: its SAE '{m.name}' takes d_in={d_saved} but the store holds d={source.d}",
                "resume against the store the run was started on, or pass --force",
            )
        m.load_state(saved)
    restore_rng(state)
    step = int(state["step"])
    if w.main:
        _truncate_metrics(out, step)
    info(f"resuming {out} at step {step} ({state['tokens']} tokens)")
    return step


def _loop(members, source, cfg, out, start, total_steps, mean_D, scale, evaluator, place: Placement) -> None:
    # every rank streams the same global batches (positions in global tokens), data-parallel ranks keep their rows;
    # or each data-parallel rank streams its own share of the store (a split stream)
    w, rows = place.world, place.rows(cfg.batch_size)
    batches = place.batches(source, cfg.batch_size, start, shuffle=True, seed=cfg.seed, dtype=torch.float32, epochs=None,
                            **({"pin_memory": True} if mean_D.device.type == "cuda" else {}))  # fmt: skip
    ckpt_steps = max(1, cfg.checkpoint_every // cfg.batch_size)
    with make_progress() as bar:
        task = bar.add_task("train", total=total_steps, completed=start, info="")
        t0, t_tokens = time.perf_counter(), 0
        for step in range(start, total_steps):
            x_BD = next(batches)
            if rows is not None:
                x_BD = x_BD[rows[0] : rows[1]]
            x_BD = (x_BD.to(mean_D.device, non_blocking=True) - mean_D) * scale
            log = (step + 1) % cfg.log_every == 0 or step + 1 == total_steps
            for i, m in enumerate(members):
                if place.trains(i):
                    m.step(x_BD, step, measure=log)
            t_tokens += cfg.batch_size
            if log:
                place.share_metrics(members)
            if log and w.main:
                rate = t_tokens / max(time.perf_counter() - t0, 1e-9)
                _log(out, members, step, cfg.batch_size, rate)
                bar.update(task, info=_bar_info(members))
                t0, t_tokens = time.perf_counter(), 0
            elif log:
                t0, t_tokens = time.perf_counter(), 0
            if evaluator is not None and evaluator.due(step + 1):  # data-parallel: the other ranks wait at the next step
                results = place.heldout(members, evaluator.normalised)
                if w.main:
                    _log_heldout(out, members, step + 1, cfg.batch_size, results)
            if (step + 1) % ckpt_steps == 0 and step + 1 < total_steps:
                states = place.states(members)
                if w.main:
                    _checkpoint(out, states, step + 1, cfg.batch_size)
            bar.advance(task)


class HeldOut:
    """The held-out tokens and when to evaluate on them (every ``eval_every`` tokens; the end is separate)."""

    def __init__(self, source: TokenSource, mean_D: torch.Tensor, scale: float, cfg: TrainConfig, total_steps: int):
        self.source, self.mean_D, self.scale, self.cfg = source, mean_D, scale, cfg
        every = cfg.eval_every or max(cfg.batch_size, total_steps * cfg.batch_size // 10)
        self.every_steps = max(1, every // cfg.batch_size)
        self.total_steps = total_steps

    def due(self, step: int) -> bool:
        return step % self.every_steps == 0 and step < self.total_steps

    def chunks(self) -> Any:
        return self.source.chunks(max_tokens=self.cfg.eval_tokens)

    def normalised(self, sae: SAE) -> dict[str, Any]:
        """Metrics of a training-space SAE (it takes (x - mean) * scale)."""
        return evaluate(sae, self.chunks(), batch_size=self.cfg.batch_size,
                        prepare=lambda x: (x - self.mean_D.to(x.device)) * self.scale)  # fmt: skip

    def raw(self, sae: SAE) -> dict[str, Any]:
        """Metrics of a saved SAE (normalisation folded in: it takes raw activations)."""
        return evaluate(sae, self.chunks(), batch_size=self.cfg.batch_size)


def _log_heldout(out: Path, members: list[Member], step: int, batch_size: int, results: dict[str, dict[str, Any]]) -> None:
    lines = []
    for m in members:
        res = m.heldout = results[m.name]
        lines.append(json.dumps({"step": step, "tokens": step * batch_size, "sae": m.name, "split": "heldout", **res}))
    with open(out / METRICS_FILE, "a") as f:
        f.write("\n".join(lines) + "\n")


def _bar_info(members: list[Member]) -> str:
    m = members[0]
    more = f" (+{len(members) - 1} SAEs)" if len(members) > 1 else ""
    return f"NMSE {m.last.get('nmse', float('nan')):.3f}  L0 {m.last.get('l0', float('nan')):.1f}{more}"


def _log(out: Path, members: list[Member], step: int, batch_size: int, rate: float) -> None:
    lines = []
    for m in members:
        rec = {"step": step + 1, "tokens": (step + 1) * batch_size, "sae": m.name, "split": "train", **m.last,
               "tokens_per_s": rate}
        lines.append(json.dumps(rec))
    with open(out / METRICS_FILE, "a") as f:
        f.write("\n".join(lines) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of RUN/metrics.jsonl; unreadable lines (a half-written last line of a killed run) are
    skipped and reported in one line."""
    f = Path(run_dir) / METRICS_FILE
    if not f.is_file():
        return []
    records, bad = [], []
    lines = f.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
        else:
            bad.append(i)
    if bad == [len(lines)]:
        info(f"{f}: ignored its half-written last line (the run was stopped while logging)")
    elif bad:
        where = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        info(f"{f}: ignored {len(bad)} unreadable line(s) (line {where})")
    return records


def _truncate_metrics(out: Path, step: int) -> None:
    """Keep the metric lines up to ``step`` (where training resumes), so none is written twice; drop
    unreadable ones."""
    if not (out / METRICS_FILE).is_file():
        return
    kept = [json.dumps(r) for r in read_metrics(out) if r["step"] <= step]
    write_text(out / METRICS_FILE, "".join(line + "\n" for line in kept))


def _checkpoint(out: Path, states: dict[str, Any] | None, step: int, batch_size: int) -> None:
    """Write the checkpoint of ``step`` from every SAE's ``Member.state()`` (``Placement.states``)."""
    save_checkpoint(out, {"step": step, "tokens": step * batch_size, "members": states})


def _finish(members, source, cfg, out, mean_D, scale, total_steps, evaluator, layout=None) -> None:
    _checkpoint(out, {m.name: m.state() for m in members}, total_steps, cfg.batch_size)
    meta = store_meta(source, cfg, mean_D, scale)
    final: dict[str, dict[str, Any]] = {}
    for m in members:
        sae = copy.deepcopy(m.sae).cpu().eval()
        sae.fold_normalization(mean_D.cpu(), scale)
        heldout = evaluator.raw(sae) if evaluator is not None else None
        if heldout is not None:
            final[m.name] = heldout
        sae.meta = {**meta, "trained_tokens": total_steps * cfg.batch_size, "run_sae": m.name,
                    "heldout_eval": _heldout_meta(heldout, cfg), "last_training_batch": m.last}  # fmt: skip
        folder = save_saelens(sae, out / RUN_SAES / m.name)
        log_density = (m.density_S().cpu() + 1e-10).log10()
        write_with(folder / "sparsity.safetensors", lambda tmp, t=log_density: save_file({"sparsity": t}, str(tmp)))
    if evaluator is not None:
        _log_heldout(out, members, total_steps, cfg.batch_size, final)
    write_json(out / SUMMARY_FILE, run_summary(members, cfg, final, total_steps, layout))
    write_marker(out, RUN_KIND, saes=[m.name for m in members], complete=True)
    from visae.sae.plots import plot_run

    plot_run(out)
    for m in members:
        h = final.get(m.name)
        said = (f"held-out NMSE {h['nmse']:.3f}, L0 {h['l0']:.1f}, dead {h['dead_pct']:.1f}% ({h['eval_tokens']:,} tokens)"
                if h else "no held-out evaluation (training-batch figures only)")  # fmt: skip
        info(f"trained {m.name}: {said}")
    info(f"-> {out / RUN_SAES}")


def _heldout_meta(res: dict[str, Any] | None, cfg: TrainConfig) -> dict[str, Any] | None:
    if res is None:
        return None
    source = f"store {cfg.eval_store}" if cfg.eval_store else f"{cfg.holdout:.0%} of the store's images, kept out of training"
    return {**res, "held_out": source}


def run_summary(members: list[Member], cfg: TrainConfig, final: dict[str, dict[str, Any]], total_steps: int,
                layout: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """RUN/summary.json: per SAE the held-out metrics of the saved SAE, and the last training batch's, labelled;
    under torchrun, how the run was split over the ranks (``Placement.describe``)."""
    return {
        **({"parallel": layout} if layout else {}),
        "trained_tokens": total_steps * cfg.batch_size,
        "tokens": cfg.tokens,
        "held_out": (f"store {cfg.eval_store}" if cfg.eval_store else f"{cfg.holdout:.0%} of the images") if final else None,
        "saes": {m.name: {"heldout": final.get(m.name), "last_training_batch": m.last} for m in members},
    }


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    f = Path(run_dir) / SUMMARY_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def store_meta(source: TokenSource, cfg: TrainConfig, mean_D: torch.Tensor, scale: float) -> dict[str, Any]:
    """visae's metadata for cfg.json: where the activations came from, which tokens and the
    statistics the SAE was trained (and folded) with."""
    raw = source.meta
    meta = raw.model_dump(mode="json") if hasattr(raw, "model_dump") else dict(raw or {})
    meta = {k: v for k, v in meta.items() if k not in BULKY_STORE_FIELDS}
    return {
        "backbone": meta.get("backbone"),
        "layer": meta.get("layer"),
        "layout": meta.get("layout"),
        "dataset": meta.get("dataset"),
        "store": str(Path(cfg.store).resolve()),
        "store_meta": meta,
        "tokens": cfg.tokens,
        "normalization": {
            "trained_on": "(x - mean) * scale" if cfg.normalize else "x",
            "scale": float(scale),
            "mean_norm": float(mean_D.float().norm()),
            "folded": True,
        },
    }


__all__ = ["Run", "TrainConfig", "train", "read_metrics", "run_sae_dirs"]
