"""torch.distributed for visae: one process group per torchrun job, gloo on CPUs, NCCL on GPUs, timeouts everywhere.

Under ``torchrun --nproc-per-node N -m visae CMD ...`` every process runs the same command; ``world()`` joins the
job's process group (from torchrun's RANK / WORLD_SIZE / MASTER_ADDR environment) once and says which rank this
process is. Without torchrun it is a world of one and every collective is a no-op, so single-process code paths do
not change. Every collective has a timeout (``VISAE_DIST_TIMEOUT`` seconds, default 300): a rank that died makes the
others stop with a one-line error instead of hanging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from visae.errors import VisaeError

TIMEOUT_ENV = "VISAE_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 300.0


def timeout_s() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        raise VisaeError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds", f"unset it or set e.g. {TIMEOUT_ENV}=300") from None


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    backend: str | None
    """gloo or nccl; None in a world of one."""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def spans_machines(self) -> bool:
        """Whether the job's ranks run on more than one machine (torchrun's LOCAL_WORLD_SIZE is smaller than the world)."""
        return self.distributed and int(os.environ.get("LOCAL_WORLD_SIZE", self.size) or self.size) < self.size

    def slice(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share [a, b) of n items: the first n % size ranks take one more."""
        return shard_range(n, self.rank, self.size)

    def barrier(self, what: str) -> None:
        if self.distributed:
            _collective(what, lambda: torch.distributed.monitored_barrier(timeout=timedelta(seconds=timeout_s()))
                        if self.backend == "gloo" else torch.distributed.barrier())  # fmt: skip

    def all_reduce(self, t: torch.Tensor, what: str, op: str = "sum") -> torch.Tensor:
        """``t`` summed (or maxed, min-ed) over the ranks, in place; returned for convenience."""
        if self.distributed:
            red = {"sum": torch.distributed.ReduceOp.SUM, "max": torch.distributed.ReduceOp.MAX,
                   "min": torch.distributed.ReduceOp.MIN}[op]  # fmt: skip
            _collective(what, lambda: torch.distributed.all_reduce(t, op=red))
        return t

    def all_gather(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """Every rank's ``t`` (same shape on every rank), stacked in rank order: ``[size, *t.shape]``."""
        if not self.distributed:
            return t.unsqueeze(0)
        out = [torch.empty_like(t) for _ in range(self.size)]
        _collective(what, lambda: torch.distributed.all_gather(out, t.contiguous()))
        return torch.stack(out)

    def broadcast_object(self, obj: Any, what: str, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        _collective(what, lambda: torch.distributed.broadcast_object_list(box, src=src))
        return box[0]

    def gather_objects(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        _collective(what, lambda: torch.distributed.all_gather_object(out, obj))
        return out

    def gather_to_main(self, obj: Any, what: str) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0 (None on the others): for state too big to send everywhere."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.size if self.main else None
        _collective(what, lambda: torch.distributed.gather_object(obj, out, dst=0))
        return out


def shard_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """[a, b) of rank ``rank`` of ``size`` over n items, contiguous, in rank order, sizes differing by at most one."""
    base, extra = divmod(n, size)
    a = rank * base + min(rank, extra)
    return a, a + base + (1 if rank < extra else 0)


_WORLD: World | None = None


def world(device: str | torch.device | None = None) -> World:
    """This process's place in the torchrun job (joined on first call), or a world of one outside torchrun."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        _WORLD = World(0, 1, 0, None)
        return _WORLD
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device is not None and str(device).startswith("cuda") and torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if not torch.distributed.is_initialized():
        try:
            torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
        except (RuntimeError, ValueError) as e:
            raise VisaeError(f"rank {rank} could not join the torchrun job ({str(e).splitlines()[0][:200]})",
                             "check MASTER_ADDR/MASTER_PORT and that every rank starts (docs/distributed.md)") from None  # fmt: skip
    _WORLD = World(rank, size, local, backend)
    return _WORLD


def _collective(what: str, fn: Any) -> Any:
    try:
        return fn()
    except (RuntimeError, ValueError) as e:  # gloo/NCCL time-outs and closed connections
        raise VisaeError(f"{what}: another rank stopped answering within {timeout_s():.0f} s ({str(e).splitlines()[0][:160]})",
                         "the job stops; fix the failed rank (its own error is in its log) and rerun the same command to resume") from None  # fmt: skip


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    global _WORLD
    if _WORLD is not None and _WORLD.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _WORLD = None
