"""Process-wide runtime settings of the classifier stage."""

from __future__ import annotations

import os

import torch


def cpu_count() -> int:
    """Cores this process may run on (respects CPU affinity / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Use ``threads`` torch CPU threads (0: one per available core); returns the number set."""
    n = threads or cpu_count()
    torch.set_num_threads(n)
    return n
