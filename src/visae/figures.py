"""matplotlib for the PNG plots of every stage: optional (the "plots" extra), Agg backend, atomic writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visae.atomic import write_with
from visae.progress import info


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None (with a note) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        info("plots skipped: matplotlib is not installed (pip install 'visae[plots]')")
        return None
    return plt


def save(plt: Any, fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and close it."""
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path
