"""The headline numbers of steer-eval in plain lines, each next to its baselines (CLI, demo summary, report)."""

from __future__ import annotations

from typing import Any


def _p(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * v:.0f}%"


def _n(v: Any, fmt: str = "+.2f") -> str:
    return "n/a" if not isinstance(v, (int, float)) else format(v, fmt)


def headline_rows(s: dict[str, Any]) -> dict[str, str]:
    """{what: one line} of a steer-eval summary (definitions: docs/steering.md)."""
    sup = s["suppression"]
    rand, direc = sup.get("random", {}), sup.get("random_direction", {})
    groups = [g for g in sup if g not in ("random", "random_direction")]
    scale = s["config"]["scale"]
    rows = {}
    for g in groups:
        rows[f"suppression of {g}-selective latents"] = (
            f"flip rate {_p(sup[g]['flip_rate'])} vs random latents {_p(rand.get('flip_rate'))} vs random directions "
            f"{_p(direc.get('flip_rate'))}; margin change {_n(sup[g]['margin_change'])} vs {_n(rand.get('margin_change'))} "
            f"vs {_n(direc.get('margin_change'))} (set to {scale:g}x max on every patch, {s['images']} {s['split']} images)")
    a = s["ablation"]
    rows["input-space ablation"] = (a.get("skipped") and f"skipped ({a['skipped']})") or (
        f"{a['mode']} of the selective latents' cells: margin change {_n(a['latent_margin_change'])} vs "
        f"{_n(a['control_margin_change'])} for as many random cells (random latents: {_n(a.get('random_latent_margin_change'))} "
        f"vs {_n(a.get('random_latent_control_margin_change'))})")
    g = s["segmentation"]
    rows["segmentation (SAE-V)"] = (g.get("skipped") and f"skipped ({g['skipped']})") or (
        f"target-change {_p(g.get('target_change'))} vs other-change {_p(g.get('other_change'))}; random latent "
        f"{_p((g.get('random_latent') or {}).get('target_change'))}, random direction "
        f"{_p((g.get('random_direction') or {}).get('target_change'))} (patch probe held-out accuracy {_p(g.get('probe_accuracy'))}, majority part {_p(g.get('probe_chance'))})")
    t = s["truth"]
    rows["ground truth (part -> classes)"] = (t.get("skipped") and f"skipped ({t['skipped']})") or (
        f"lift {_n(t['lift'], '.2f')} vs random directions {_n(t['random_direction_lift'], '.2f')} vs random latents "
        f"{_n(t['random_latent_lift'], '.2f')} (1 = no preference; mean over {t['latents']} part latents with power, "
        f"{t.get('passed', 0)} of them above 1 and both baselines)")
    return rows


def headline_lines(s: dict[str, Any]) -> list[str]:
    head = s["head"]
    read = "the classifier's logits" if head["kind"] == "classifier" else f"a linear probe (held-out top-1 {_p(head['heldout_accuracy'])})"
    lines = [f"steer-eval of {s['run']} on {s['images']} held-out images ({s['split']}), read on {read}:"]
    lines += [f"  {k}: {v}" for k, v in headline_rows(s).items()]
    lines.append(f"  wrote {s['run']}/steer/ in {s['seconds']:.0f} s")
    return lines
