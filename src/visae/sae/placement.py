"""How a torchrun job splits a training run over its ranks: by data, by SAE, or by latent (``--parallel``).

- **data** (default): every rank holds every SAE whole and trains it on its own rows of each global batch;
  one all-reduce per SAE and step keeps the ranks identical (``member.py``).
- **sweep**: rank r trains the SAEs ``i`` of the sweep with ``i % R == r``, each on whole batches, without
  any communication while training; the SAEs it does not train stay at their initial weights there.
- **latents**: every rank holds a slice of every SAE's latents and sees whole batches; the top-k is
  chosen over all slices (``sharded.py``). For SAEs too wide for one device.

Whatever the mode, rank 0 alone writes the run directory, and what it writes is what one process would:
metrics of whole SAEs, checkpoints of whole SAEs (any mode and world size resumes them), saved SAEs. The
functions below bring the pieces to rank 0 at those moments; every rank calls them at the same points.
In a world of one every mode is the same single-process run.
"""

from __future__ import annotations

from typing import Any

from visae.distributed import World
from visae.errors import VisaeError
from visae.sae.base import SAE
from visae.sae.member import Member
from visae.sae.sharded import _to_cpu, check_shardable, shard, whole_metrics
from visae.sae.train_config import TrainConfig

MODES = ("data", "sweep", "latents")


class Placement:
    """The ``--parallel`` mode of a run in its ``World``."""

    def __init__(self, cfg: TrainConfig, world: World):
        self.world = world
        self.mode = cfg.parallel if world.distributed else "data"
        split = cfg.stream == "split" or (cfg.stream == "auto" and world.spans_machines)
        self.split_stream = split and self.mode == "data" and world.distributed
        """Each rank reads its own share of the store (``visae.store.stream``'s ``part``) instead of every global batch."""

    def check(self, cfg: TrainConfig, d: int) -> None:
        """Refuse a run that this mode cannot split over these ranks (a one-line error, before any writing)."""
        w, n = self.world, len(cfg.saes)
        if self.mode == "data" and cfg.batch_size % w.size:
            raise VisaeError(f"--batch-size {cfg.batch_size} does not split over {w.size} ranks",
                             f"pass a multiple of {w.size} (--batch-size is the global batch; each rank takes 1/{w.size})")  # fmt: skip
        if cfg.stream == "split" and self.mode != "data" and w.distributed:
            raise VisaeError(f"--stream split is for --parallel data: with --parallel {self.mode} every rank reads whole batches",
                             "drop --stream (or pass --stream global)")  # fmt: skip
        if self.mode == "sweep" and n < w.size:
            raise VisaeError(f"--parallel sweep places {n} SAE(s) on {w.size} ranks: {w.size - n} would idle",
                             f"train at least {w.size} SAEs (--config with [[sae]] tables), or use --parallel data")  # fmt: skip
        if self.mode == "latents":
            for hp in cfg.saes:
                check_shardable(hp.arch)
                if hp.spec(d).d_sae < w.size:
                    raise VisaeError(f"SAE '{hp.label()}' has {hp.spec(d).d_sae} latents, fewer than the {w.size} ranks",
                                     "use a wider SAE or fewer ranks")  # fmt: skip

    # ---------------------------------------------------------------- building and stepping

    def member_world(self) -> World | None:
        """The world a Member all-reduces its gradients in (data-parallel only)."""
        return self.world if self.mode == "data" else None

    def build(self, sae: SAE) -> SAE:
        """The SAE (freshly initialised, whole) as this rank holds it."""
        return shard(sae, self.world) if self.mode == "latents" else sae

    def trains(self, i: int) -> bool:
        """Whether this rank trains the run's ``i``-th SAE."""
        return self.mode != "sweep" or i % self.world.size == self.world.rank

    def rows(self, batch_size: int) -> tuple[int, int] | None:
        """This rank's rows of each global batch it reads (None: all of them)."""
        return self.world.slice(batch_size) if self.mode == "data" and self.world.distributed and not self.split_stream else None

    def batches(self, source: Any, batch_size: int, start_step: int, **kw: Any) -> Any:
        """The batches this rank reads from step ``start_step`` on: the global ones, or with a split stream its own
        ``batch_size / N`` tokens a step from its own share of the store."""
        if not self.split_stream:
            return source.batches(batch_size, start=start_step * batch_size, **kw)
        local = batch_size // self.world.size
        return source.batches(local, start=start_step * local, part=(self.world.rank, self.world.size), **kw)

    def describe(self, members: list[Member]) -> dict[str, Any] | None:
        """For RUN/summary.json (on rank 0; None elsewhere): the mode, and the SAE parameters each rank trains,
        measured on the ranks, next to those of the whole SAEs."""
        if not self.world.distributed:
            return None
        here = sum(p.numel() for i, m in enumerate(members) if self.trains(i) for p in m.sae.parameters())
        counts = self.world.gather_to_main(here, "train: describe the placement")
        if counts is None:
            return None
        whole = sum(m.sae.full_spec.d_sae * (2 * m.sae.d_in + 1) + m.sae.d_in if m.shard is not None
                    else sum(p.numel() for p in m.sae.parameters()) for m in members)  # fmt: skip
        return {"mode": self.mode, "ranks": self.world.size, "params_per_rank": counts, "params_whole_saes": whole}

    # ---------------------------------------------------------------- bringing the run to rank 0

    def share_metrics(self, members: list[Member]) -> None:
        """Rank 0's members get the training metrics of the SAEs other ranks train (sweep)."""
        if self.mode != "sweep":
            return
        parts = self.world.gather_to_main({m.name: m.last for i, m in enumerate(members) if self.trains(i)}, "train: metrics")
        for part in parts or []:
            for m in members:
                if m.name in part:
                    m.last = part[m.name]

    def states(self, members: list[Member]) -> dict[str, Any] | None:
        """Every SAE's whole training state on rank 0 (None on the others), for a checkpoint."""
        if self.mode == "latents":
            states = {m.name: m.state() for m in members}  # each a collective
            return states if self.world.main else None
        if self.mode == "sweep" and self.world.distributed:
            mine = {m.name: _to_cpu(m.state()) for i, m in enumerate(members) if self.trains(i)}
            parts = self.world.gather_to_main(mine, "train: collect the SAEs for a checkpoint")
            return None if parts is None else {k: v for part in parts for k, v in part.items()}
        return {m.name: m.state() for m in members} if self.world.main else None

    def heldout(self, members: list[Member], evaluate: Any) -> dict[str, dict[str, Any]] | None:
        """``evaluate(sae)`` of every SAE, on rank 0 (None elsewhere): data-parallel on rank 0 alone, a sweep's
        SAEs each on its own rank, sharded SAEs on every rank together."""
        if self.mode == "latents":
            res = {m.name: whole_metrics(evaluate(m.sae), m.sae) for m in members}  # type: ignore[arg-type]
            return res if self.world.main else None
        if self.mode == "sweep":
            mine = {m.name: evaluate(m.sae) for i, m in enumerate(members) if self.trains(i)}
            parts = self.world.gather_to_main(mine, "train: held-out evaluation")
            return None if parts is None else {k: v for part in parts for k, v in part.items()}
        return {m.name: evaluate(m.sae) for m in members} if self.world.main else None

    def gather(self, members: list[Member]) -> None:
        """At the end: rank 0's members hold every SAE whole and trained, with its state (the others keep theirs)."""
        if self.mode == "latents":
            for m in members:
                m.unshard()
        elif self.mode == "sweep":
            states = self.states(members)
            for i, m in enumerate(members):
                if states is not None and not self.trains(i):
                    m.load_state(states[m.name])
        # rank 0 has received everything before the others may leave (and close their connections)
        self.world.barrier("train: collect the SAEs")
