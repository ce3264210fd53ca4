"""The report's "Causal tests" section: the tables of RUN/steer/*.json (``visae steer-eval``), with their baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from visae.reporting.sections import esc, png_tag


def _read(folder: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{100 * v:.0f}%"


def _num(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v:+.2f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='grid'><tr>{th}</tr>{body}</table>"


def _plot(folder: Path, name: str, alt: str) -> str:
    f = folder / f"{name}.png"
    return f"<p>{png_tag(f.read_bytes(), alt, 760)}</p>" if f.is_file() else ""


def causal(run: str | Path) -> str:
    """The section, or a note saying how to make it."""
    from visae.steering.headline import headline_rows

    folder = Path(run) / "steer"
    summary = _read(folder, "summary")
    if summary is None:
        return ("<h2>Causal tests</h2><p class='note'>Not run yet: <code>visae steer-eval --run RUN</code> suppresses the most "
                "selective latents, ablates their image regions and checks them against random baselines.</p>")
    kv = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in headline_rows(summary).items())
    parts = [f"<h2>Causal tests</h2><p class='sub'>{summary['images']} held-out images ({esc(summary['split'])}); "
             "every edit keeps the SAE's error (x' = x + (z_edit − z)·W_dec); definitions in docs/steering.md.</p>"
             f"<table class='kv'>{kv}</table>"]  # fmt: skip
    parts += [_suppression(folder), _dose(folder), _ablation(folder), _segmentation(folder), _truth(folder)]
    return "\n".join(p for p in parts if p)


def _suppression(folder: Path) -> str:
    sup = _read(folder, "suppression")
    if not sup:
        return ""
    rows = [[str(r["latent"]), esc(r["group"]), esc(r.get("label") or ""), str(r["images"]),
             _pct(r["suppress"]["flip_rate"]), _pct(r["suppress_random_direction"]["flip_rate"]),
             _num(r["suppress"]["margin_change"]), _num(r["suppress_random_direction"]["margin_change"]),
             _pct(r["zero"]["flip_rate"]), _num(r["zero"]["margin_change"])]
            for r in sup["latents"] if "suppress" in r]  # fmt: skip
    head = ["latent", "group", "label", "images", "flip", "flip, random dir.", "margin Δ", "margin Δ, random dir.",
            "flip, zeroed", "margin Δ, zeroed"]  # fmt: skip
    return (f"<h3>Suppression (set to {sup['scale']:g}× max on every patch) and zero-ablation, per latent</h3>"
            + _table(head, rows) + _plot(folder, "suppression", "suppression vs random directions"))


def _dose(folder: Path) -> str:
    dose = _read(folder, "dose")
    if not dose or not dose["latents"]:
        return ""
    doses = dose["doses"]
    rows = []
    for latent, d in dose["latents"].items():
        by = {r["dose"]: r for r in d["rows"]}
        rows.append([f"{latent} ({esc(d['group'])}) flip"] + [_pct(by[x]["flip_rate"]) if x in by else "–" for x in doses])
        rows.append([f"{latent} margin Δ"] + [_num(by[x]["margin_change"]) if x in by else "–" for x in doses])
    return ("<h3>Dose-response (set to dose × max on every patch)</h3>" + _table(["latent"] + [f"{x:g}×" for x in doses], rows)
            + _plot(folder, "dose", "dose-response"))


def _ablation(folder: Path) -> str:
    abl = _read(folder, "ablation")
    if not abl or not abl.get("latents"):
        return ""
    rows = [[str(a["latent_index"]), esc(a.get("group", "")), str(a["images"]), f"{a['cells_mean']:.1f}",
             _num(a["latent"].get("margin_change")), _num(a["control"].get("margin_change")),
             _pct(a["latent"].get("flip_rate")), _pct(a["control"].get("flip_rate")),
             _pct((a.get("own_activation") or {}).get("latent")), _pct((a.get("own_activation") or {}).get("control"))]
            for a in abl["latents"] if a.get("latent")]  # fmt: skip
    head = ["latent", "group", "images", "cells", "margin Δ", "margin Δ, random cells", "flip", "flip, random cells",
            "own act. drop", "own act. drop, random cells"]  # fmt: skip
    return (f"<h3>Input-space ablation ({esc(abl['mode'])} the cells where the latent fires) vs as many random cells</h3>"
            + _table(head, rows) + _plot(folder, "ablation", "ablation vs random cells"))


def _segmentation(folder: Path) -> str:
    seg = _read(folder, "segmentation")
    if not seg or "parts" not in seg:
        return ""
    rows = [[esc(p["part"]), str(p["latent"]), f"{p['f1']:.2f}", _pct(p["target_change"]), _pct(p["other_change"]),
             _pct(p["random_latent"]["target_change"]), _pct(p["random_direction"]["target_change"])]
            for p in seg["parts"]]  # fmt: skip
    m = seg["macro"]
    rows.append(["<b>macro</b>", "", "", _pct(m.get("target_change")), _pct(m.get("other_change")),
                 _pct((m.get("random_latent") or {}).get("target_change")), _pct((m.get("random_direction") or {}).get("target_change"))])  # fmt: skip
    probe = seg["probe"]
    return (f"<h3>Segmentation (SAE-V): patch probe held-out accuracy {_pct(probe.get('accuracy'))} "
            f"(majority part {_pct(probe.get('chance'))})</h3>"
            + _table(["part", "latent", "F1", "target change", "other change", "target, random latent", "target, random dir."], rows)
            + _plot(folder, "segmentation", "segmentation change rates"))


def _truth(folder: Path) -> str:
    tr = _read(folder, "truth")
    if not tr or not tr.get("latents"):
        return ""
    rows = [[str(t["latent"]), esc(t["part"]), esc(", ".join(t["factors"])), str(t["lift_images"]), f"{t['lift']:.2f}" if t["lift"] else "–",
             f"{t['random_direction']['lift']:.2f}" if t["random_direction"].get("lift") else "–",
             f"{t['random_latent']['lift']:.2f}" if t["random_latent"].get("lift") else "–",
             _pct(t["directed_share"]), _pct(t["chance_share"]), "yes" if t.get("powered") else "no (too few images)"]
            for t in tr["latents"]]  # fmt: skip
    head = ["latent", "part", "its factors", "images", "lift", "lift, random dir.", "lift, random latents", "directed share",
            "chance share", "in the headline"]  # fmt: skip
    return ("<h3>Ground truth: does suppressing a part's latent favour classes that differ in that part?</h3>"
            "<p class='note'>lift = probability gained per class that differs in the part's factors over per class that "
            "agrees; 1 = no preference. 'images' counts the images with classes on both sides of the part; with fewer than "
            f"{tr.get('min_lift_images', 16)} the lift has no power and is left out of the headline.</p>" + _table(head, rows))
