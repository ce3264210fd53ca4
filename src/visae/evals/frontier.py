"""``visae eval frontier``: the sparsity–fidelity trade-off across SAEs, from their held-out evaluations.

Each SAE is a point (held-out L0 or its width, held-out NMSE), read from its cfg.json (``visae.heldout_eval``,
written by ``visae train``). A point is on the frontier when no other point has both a lower-or-equal x and
a lower NMSE (the Pareto front of minimising both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from visae.errors import VisaeError
from visae.evals.config import FrontierConfig


def points(runs: list[Path], x: str = "l0") -> list[dict[str, Any]]:
    """One point per SAE of ``runs`` (a run, a sweep with several SAEs, or an SAE folder)."""
    from visae.sae.importers import run_sae_dirs

    out = []
    for run in runs:
        run = Path(run)
        if not run.is_dir():
            raise VisaeError(f"{run}: no such directory", "pass runs visae train wrote")
        dirs = run_sae_dirs(run) if (run / "saes").is_dir() else ({run.name: run} if (run / "cfg.json").is_file() else {})
        if not dirs:
            raise VisaeError(f"{run} holds no trained SAE", "pass runs visae train wrote (finished)")
        for name, folder in dirs.items():
            cfg = json.loads((folder / "cfg.json").read_text())
            meta = cfg.get("visae") or {}
            held = meta.get("heldout_eval")
            if not isinstance(held, dict) or "nmse" not in held:
                raise VisaeError(f"the SAE in {folder} has no held-out evaluation", "train it with --holdout > 0 or --eval-store (visae train)")
            spec = meta.get("spec") or {}
            out.append({"name": f"{run.name}/{name}" if len(dirs) > 1 else run.name, "path": str(folder),
                        "arch": meta.get("arch") or spec.get("arch"), "d_sae": int(cfg.get("d_sae", 0)), "k": spec.get("k"),
                        "l0": float(held["l0"]), "nmse": float(held["nmse"])})  # fmt: skip
    key = "l0" if x == "l0" else "d_sae"
    for p in out:
        p["frontier"] = not any(q is not p and q[key] <= p[key] and q["nmse"] < p["nmse"] for q in out)
    return sorted(out, key=lambda p: (p[key], p["nmse"]))


def frontier(cfg: FrontierConfig) -> dict[str, Any]:
    pts = points(cfg.run, cfg.x)
    path = cfg.out or Path(cfg.run[0]) / "frontier.png"
    return {"points": pts, "plot": str(path) if plot(pts, cfg.x, path) else None}


def plot(pts: list[dict[str, Any]], x: str, path: Path) -> bool:
    from visae.figures import pyplot, save

    plt = pyplot()
    if plt is None:
        return False
    key = "l0" if x == "l0" else "d_sae"
    fig, ax = plt.subplots(figsize=(6, 4))
    for arch in sorted({str(p["arch"]) for p in pts}):
        mine = [p for p in pts if str(p["arch"]) == arch]
        ax.scatter([p[key] for p in mine], [p["nmse"] for p in mine], label=arch)
    front = [p for p in pts if p["frontier"]]
    ax.plot([p[key] for p in front], [p["nmse"] for p in front], color="black", lw=0.8, label="frontier")
    for p in pts:
        ax.annotate(p["name"], (p[key], p["nmse"]), fontsize=6, alpha=0.7)
    ax.set_xlabel("held-out L0" if key == "l0" else "latents (width)")
    ax.set_ylabel("held-out NMSE")
    ax.set_xscale("log") if key == "d_sae" else None
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(plt, fig, Path(path))
    return True
