"""The report's "Evaluation" section: the tables of RUN/eval/*.json (``visae eval``), each score next to its baselines."""

from __future__ import annotations

import json
from pathlib import Path

from visae.reporting.sections import esc


def evaluation(run: str | Path) -> str:
    """The section, or a note saying how to make it."""
    from visae.evals.run import family, skipped

    folder = Path(run) / "eval"
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return ("<h2>Evaluation</h2><p class='note'>Not run yet: <code>visae eval --run RUN --store HELD_OUT</code> scores the SAE "
                "on held-out data against PCA, k-means, a random-init SAE and the raw channels.</p>")
    kv = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in summary["headline"].items())
    parts = [f"<h2>Evaluation</h2><p class='sub'>{summary['images']} held-out images, {summary['tokens']:,} tokens "
             f"({esc(summary['heldout'])}); definitions in docs/metrics.md.</p><table class='kv'>{kv}</table>"]
    for suite, state in summary["suites"].items():
        try:
            res = json.loads((folder / f"{suite}.json").read_text())
        except (OSError, ValueError):
            continue
        if state == "skipped" or skipped(res):
            parts.append(f"<h3>{esc(suite)}</h3><p class='note'>skipped: {esc(str(skipped(res)))}</p>")
            continue
        head, rows = family(suite).table(res)
        th = "".join(f"<th>{esc(str(h))}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        parts.append(f"<h3>{esc(suite)}</h3><table class='grid'><tr>{th}</tr>{body}</table>")
    return "\n".join(parts)
