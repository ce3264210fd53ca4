"""The sections of the report, each a function from the feature DB to an HTML fragment."""

from __future__ import annotations

import base64
import html
import sqlite3
from collections.abc import Sequence
from typing import Any

from visae.analysis.db import FeatureDB
from visae.analysis.overlays import Overlays
from visae.report.plots import density_histogram_png

BANDS = ((0.0, 1e-3, "rare (< 0.1% of tokens)"), (1e-3, 1e-2, "0.1% - 1%"), (1e-2, 1e-1, "1% - 10%"),
         (1e-1, 1.01, "dense (>= 10%)"))
"""Firing-frequency bands of the 'by frequency' section: (low, high, title)."""

esc = html.escape


def png_tag(data: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{esc(alt)}"{w} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return esc(str(v))


def header(db: FeatureDB) -> str:
    m, s = db.meta, db.meta["summary"]
    sae = m.get("sae") or {}
    metrics = m.get("metrics") or {}
    sae_fields = {k: v for k, v in sae.items() if isinstance(v, (int, float, str, bool)) and len(str(v)) < 80}
    rows = {
        "backbone": m["backbone"], "layer": m["layer"],
        "layout": f"{m['layout'].get('kind')} grid {m['grid'][0]}x{m['grid'][1]}" if m["has_grid"] else m["layout"].get("kind"),
        "dataset": f"{m['dataset']} ({m['split']})", "images / tokens": f"{s['n_images']} / {s['n_tokens']}",
        "latents": s["n_latents"], "d_in": s["d"],
        "NMSE (training run)": metrics.get("nmse", metrics.get("val_nmse", "n/a")),
        "L0 (training run)": metrics.get("l0", metrics.get("val_l0", "n/a")),
        "mean L0 (this pass)": s["mean_l0"], "dead latents": f"{s['dead_pct']:.1f}%",
        f"dense latents (> {m['dense_freq']:.0%} of tokens)": f"{s['dense_pct']:.1f}%",
        "labels": "CLIP text tower" if s["text_labels"] == "clip" else f"class / part ({s['text_labels']})",
    }
    kv = "".join(f"<tr><td>{esc(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    cfg = "".join(f"<tr><td>{esc(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in sae_fields.items())
    return (f"<h1>SAE features of {esc(m['backbone'])} · {esc(m['layer'])}</h1>"
            f"<p class='sub'>run {esc(m['run'])}</p><h2>Run summary</h2><table class='kv'>{kv}</table>"
            + (f"<h3>SAE config</h3><table class='kv'>{cfg}</table>" if cfg else ""))


def density(db: FeatureDB) -> str:
    freq = db.column("freq")
    return ("<h2>Latent density</h2><p>How often each latent fires, as a share of all analysed tokens.</p>"
            + png_tag(density_histogram_png(freq), "density histogram"))


def purity(db: FeatureDB) -> str:
    s, m = db.meta["summary"], db.meta
    if s.get("part_pure_sae") is None:
        return "<h2>Part purity</h2><p class='note'>The dataset has no part masks (or the layer has no token grid).</p>"
    names = db.names("parts")
    thr, k = m["pure_share"], m["part_top"]
    sae = [r["part"] for r in db.query("SELECT part FROM latents WHERE part > 0 AND part_share >= ?", thr)]
    raw = [r["part"] for r in db.query("SELECT part FROM channels WHERE part > 0 AND part_share >= ?", thr)]
    n_raw = s.get("part_pure_raw")
    head = (f"<p class='big'>Units whose top-{k} patches fall &ge; {thr:.0%} on one part: "
            f"<b>SAE {s['part_pure_sae']}</b> of {s['n_latents']} latents vs "
            f"<b>raw channels {n_raw if n_raw is not None else 'n/a'}</b> of {s['n_channels']}.</p>")
    rows = "".join(f"<tr><td>{esc(names[p])}</td><td>{sae.count(p)}</td><td>{raw.count(p)}</td></tr>"
                   for p in range(1, len(names)))
    return (f"<h2>Part purity</h2>{head}<table class='grid'><tr><th>part</th><th>SAE latents</th>"
            f"<th>raw channels</th></tr>{rows}</table>")


def card(db: FeatureDB, ov: Overlays, row: sqlite3.Row, n_images: int, class_names: Sequence[str]) -> str:
    lid = row["id"]
    examples = db.top_examples(lid, "max", limit=n_images)
    figs = []
    for rank, ex in enumerate(examples):
        data = ov.png(lid, "max", rank).read_bytes()
        cls = class_names[ex["label"]] if 0 <= ex["label"] < len(class_names) else "?"
        alt = f"latent {lid} on {ex['image_id']}"
        figs.append(f"<figure>{png_tag(data, alt, ov.size)}"
                    f"<figcaption>{esc(cls)} · {ex['score']:.3g}</figcaption></figure>")
    top_class = class_names[row["top_class"]] if 0 <= row["top_class"] < len(class_names) else "-"
    part = db.names("parts")[row["part"]] if row["part"] > 0 else "-"
    label = f"{esc(row['label'] or '(no label)')} <span class='note'>({esc(row['label_source'] or '-')} {row['label_score']:.2f})</span>"
    meta = (f"freq {row['freq']:.2e} · max {row['max_act']:.3g} · class {esc(top_class)} {row['class_share']:.0%}"
            + (f" · part {esc(part)} {row['part_share']:.0%}" if row["part"] > 0 else ""))
    return (f"<div class='card'><h4>#{lid} · {label}</h4><div class='meta'>{meta}</div>"
            f"<div class='thumbs'>{''.join(figs) or '<span class=note>never fired</span>'}</div></div>")


SEEN = "(SELECT COUNT(*) FROM top_examples t WHERE t.latent = latents.id AND t.ranking = 'max') >= ?"
"""SQL: the latent fired on at least ? images (a share of 100% over one image says nothing)."""


def selective(db: FeatureDB, ov: Overlays, n: int, n_images: int) -> str:
    seen = min(n_images, db.meta["top"])
    rows = db.query(f"SELECT * FROM latents WHERE freq > 0 AND top_class >= 0 ORDER BY {SEEN} DESC, freq > ?, "
                    "class_share DESC, max_act DESC LIMIT ?", seen, db.meta["dense_freq"], n)
    classes = db.names("classes")
    cards = "".join(card(db, ov, r, n_images, classes) for r in rows)
    return ("<h2>Most class-selective latents</h2><p>Share of each latent's activation mass on its top class; "
            f"heatmaps of its top images (ranked by max patch activation). Latents seen on fewer images than shown here, and dense latents, come last.</p><div class='cards'>{cards}</div>")


def bands(db: FeatureDB, ov: Overlays, n: int, n_images: int) -> str:
    classes = db.names("classes")
    seen = min(n_images, db.meta["top"])
    parts = ["<h2>Latents by frequency band</h2><p>In each band, the latents with the best-supported labels.</p>"]
    for lo, hi, title in BANDS:
        rows = db.query(f"SELECT * FROM latents WHERE freq > ? AND freq <= ? ORDER BY {SEEN} DESC, label_score DESC, "
                        "max_act DESC LIMIT ?", lo, hi, seen, n)
        count = db.query("SELECT COUNT(*) AS c FROM latents WHERE freq > ? AND freq <= ?", lo, hi)[0]["c"]
        cards = "".join(card(db, ov, r, n_images, classes) for r in rows)
        parts.append(f"<h3>{esc(title)} · {count} latents</h3><div class='cards'>{cards or '<p class=note>none</p>'}</div>")
    return "".join(parts)


def per_class(db: FeatureDB, per: int = 8) -> str:
    classes = db.names("classes")
    rows = db.query("SELECT id, label, class_share, top_class FROM latents WHERE freq > 0 AND top_class >= 0 "
                    "ORDER BY top_class, class_share DESC")
    by_class: dict[int, list[sqlite3.Row]] = {}
    for r in rows:
        by_class.setdefault(r["top_class"], []).append(r)
    items = []
    for c, name in enumerate(classes):
        lat = by_class.get(c, [])
        chips = "".join(f"<span class='chip'>#{r['id']} {esc(r['label'])} {r['class_share']:.0%}</span>" for r in lat[:per])
        more = f" <span class='note'>+{len(lat) - per} more</span>" if len(lat) > per else ""
        items.append(f"<tr><td>{esc(name)}</td><td>{len(lat)}</td><td>{chips or '-'}{more}</td></tr>")
    return ("<h2>Latents per class</h2><p>Latents whose activation mass is largest on each class, most selective first.</p>"
            f"<table class='grid'><tr><th>class</th><th>latents</th><th>most selective</th></tr>{''.join(items)}</table>")

