"""Where a stage computes: one device spec string for every stage.

``resolve_device("auto")`` is the GPU when torch sees one and the CPU otherwise;
``"cpu"``, ``"cuda"`` and ``"cuda:N"`` name one. Asking for a GPU that is not there is a
one-line ``VisaeError``, never a CUDA traceback halfway through a stage.
"""

from __future__ import annotations

import torch

from visae.errors import VisaeError


def resolve_device(spec: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda[:N]`` -> a torch.device that exists on this machine."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise VisaeError(f"unknown device '{spec}'", "use auto, cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise VisaeError(f"unsupported device '{spec}'", "use auto, cpu or cuda[:N]")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise VisaeError(f"--device {spec} was asked for but torch sees no GPU here", "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise VisaeError(
                f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s)",
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1}",
            )
    return dev
