"""The sections of the report, each a function from the feature DB to an HTML fragment."""

from __future__ import annotations

import base64
import html
import io
import sqlite3
from collections.abc import Sequence
from typing import Any

from visae.analysis.db import FeatureDB
from visae.analysis.heatmaps import BOX_REL, MAX_OUTLINED, colour_bar
from visae.analysis.overlays import Overlays
from visae.reporting.plots import density_histogram_png

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
        "analysed token kinds": "+".join(k) if isinstance(k := m.get("analysed_kinds", "all"), list) else k,
        "latents": s["n_latents"], "d_in": s["d"],
        **_heldout_rows(m.get("heldout")),
        "NMSE (last training batch)": metrics.get("nmse", metrics.get("val_nmse", "n/a")),
        "L0 (last training batch)": metrics.get("l0", metrics.get("val_l0", "n/a")),
        "mean L0 (analysis pass, every store token)": s["mean_l0"], "dead latents (analysis pass)": f"{s['dead_pct']:.1f}%",
        f"dense latents (> {m['dense_freq']:.0%} of tokens)": f"{s['dense_pct']:.1f}%",
        "labels": "CLIP text tower" if s["text_labels"] == "clip" else f"class / part ({s['text_labels']})",
        **_label_rows(s.get("labels")), **_dedup_rows(m.get("dedup")),
    }
    kv = "".join(f"<tr><td>{esc(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    cfg = "".join(f"<tr><td>{esc(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in sae_fields.items())
    return (f"<h1>SAE features of {esc(m['backbone'])} · {esc(m['layer'])}</h1>"
            f"<p class='sub'>run {esc(m['run'])}</p><h2>Run summary</h2><table class='kv'>{kv}</table>"
            + (f"<h3>SAE config</h3><table class='kv'>{cfg}</table>" if cfg else ""))


def _label_rows(counts: dict[str, Any] | None) -> dict[str, Any]:
    if not counts:
        return {}
    by = ", ".join(f"{k} {v}" for k, v in sorted(counts["by_source"].items())) or "none"
    return {"labelled latents (by source)": by,
            "unlabelled latents (below every threshold)": f"{counts['unlabelled']} ({counts['guessed']} with a best guess)"}


def _dedup_rows(d: dict[str, Any] | None) -> dict[str, Any]:
    if not d:
        return {}
    if "reason" in d:
        return {"near-duplicate images": f"not collapsed ({d['reason']})"}
    dropped = d.get("dropped", {}).get("max", 0)
    return {"near-duplicate images": f"{d['pairs']} pairs among {d['images']} images compared "
                                     f"({d['images_with_duplicates']} images with a near-duplicate); {dropped} entries "
                                     f"collapsed from {d.get('latents', {}).get('max', 0)} latents' top lists (max ranking)"}


def _heldout_rows(h: dict[str, Any] | None) -> dict[str, Any]:
    """The saved SAE's held-out figures (docs/metrics.md), or a note that the run has none."""
    if not h:
        return {"held-out evaluation": "none recorded (a run without a held-out share): training-batch figures only"}
    return {
        f"held-out NMSE ({h.get('eval_tokens', 0):,} tokens never trained on: {h.get('held_out', '')})": h.get("nmse"),
        "held-out explained variance": h.get("explained_variance"),
        "held-out L0 (inference-time codes)": h.get("l0"),
        "held-out dead latents (never fire)": f"{h.get('dead_pct', 0):.1f}%",
        "held-out dense latents (> 10% of tokens)": f"{h.get('dense_pct', 0):.1f}%",
    }


def density(db: FeatureDB) -> str:
    freq = db.column("freq")
    return ("<h2>Latent density</h2><p>How often each latent fires, as a share of all analysed tokens.</p>"
            + png_tag(density_histogram_png(freq), "density histogram"))


def _comparison(entry: dict[str, Any] | None, what: str) -> str:
    """The headline of one measure: every population's fraction, side by side, and its definition."""
    from visae.analysis.baselines import POPULATIONS

    pops = [(name, units, (entry or {}).get(key)) for key, (name, units) in POPULATIONS.items()]
    pops = [p for p in pops if p[2] is not None]
    median = any("median_index" in pop for _, _, pop in pops)
    cells = []
    for name, units, pop in pops:
        if pop.get("frac") is None:
            cells.append(f"<td>{esc(name)}</td><td colspan={3 if median else 2} class='note'>"
                         f"n/a ({esc(pop.get('reason', ''))})</td>")
            continue
        m = pop.get("median_index")
        cells.append(f"<td>{esc(name)}</td><td><b>{100 * pop['frac']:.1f}%</b></td>"
                     f"<td>{pop['n']} of {pop['of']} {esc(units)}</td>"
                     + (f"<td>{'-' if m is None else f'{m:.2f}'}</td>" if median else ""))
    rows = "".join(f"<tr>{c}</tr>" for c in cells)
    extra = "<th>median index</th>" if median else ""
    return (f"<p>{esc(what)}: {esc((entry or {}).get('definition', ''))}.</p>"
            f"<table class='grid'><tr><th>units</th><th>fraction</th><th>count</th>{extra}</tr>{rows}</table>")


def purity(db: FeatureDB) -> str:
    s = db.meta["summary"]
    entry = s.get("part_pure")
    if entry is None:
        return "<h2>Part purity</h2><p class='note'>The dataset has no part masks (or the analysed tokens have no grid).</p>"
    names = db.names("parts")
    pops = [k for k in ("sae", "raw", "random") if (entry.get(k) or {}).get("by_part") is not None]
    heads = {"sae": "SAE latents", "raw": "raw channels (signed)", "random": "random-init SAE"}
    head = "".join(f"<th>{heads[k]}</th>" for k in pops)
    rows = "".join(f"<tr><td>{esc(names[p])}</td>" + "".join(f"<td>{entry[k]['by_part'][p]}</td>" for k in pops) + "</tr>"
                   for p in range(1, len(names)))
    return (f"<h2>Part purity</h2>{_comparison(entry, 'Part-pure units')}"
            f"<p>Part-pure units by part:</p><table class='grid'><tr><th>part</th>{head}</tr>{rows}</table>")


def label_html(row: sqlite3.Row) -> str:
    """The latent's label with its source and score, or 'unlabelled' and its best guess, as a guess."""
    if row["label"]:
        badge = "<span class='badge border'>border/position</span> " if row["label_source"] == "border" else ""
        what = "" if row["label_source"] == "border" else esc(row["label"])
        note = (f" <span class='note'>(edge/interior {row['label_score']:.1f}x)</span>" if row["label_source"] == "border"
                else f" <span class='note'>({esc(row['label_source'])} {row['label_score']:.2f})</span>")
        guess = (f" <span class='guess'>(best guess otherwise: {esc(row['guess'])}, {esc(row['guess_source'])} "
                 f"{row['guess_score']:.2f})</span>") if row["guess"] else ""
        return f"{badge}{what}{note}{guess}"
    if row["guess"]:
        return (f"<span class='unlabelled'>unlabelled</span> <span class='guess'>(best guess: {esc(row['guess'])}, "
                f"{esc(row['guess_source'])} {row['guess_score']:.2f}; not a label: {esc(row['guess_why'])})</span>")
    return f"<span class='unlabelled'>unlabelled</span> <span class='note'>({esc(row['guess_why'] or 'no evidence')})</span>"


def card(db: FeatureDB, ov: Overlays, row: sqlite3.Row, n_images: int, class_names: Sequence[str]) -> str:
    lid = row["id"]
    examples = db.top_examples(lid, "max", limit=n_images)
    figs = []
    for rank, ex in enumerate(examples):
        data = ov.png(lid, "max", rank).read_bytes()
        cls = class_names[ex["label"]] if 0 <= ex["label"] < len(class_names) else "?"
        alt = f"latent {lid} on {ex['image_id']}"
        dups = f" · <span class='dup'>+{ex['dups']} near-dup.</span>" if ex["dups"] else ""
        figs.append(f"<figure>{png_tag(data, alt, ov.size)}"
                    f"<figcaption>{esc(cls)} · {ex['score']:.3g}{dups}</figcaption></figure>")
    top_class = class_names[row["top_class"]] if 0 <= row["top_class"] < len(class_names) else "-"
    part = db.names("parts")[row["part"]] if row["part"] > 0 else "-"
    edge = f" · edge/interior {row['edge_ratio']:.1f}x" if row["edge_ratio"] is not None else ""
    dup = f" · {row['top_dups']} near-duplicates collapsed" if row["top_dups"] else ""
    meta = (f"freq {row['freq']:.2e} · max {row['max_act']:.3g} · {row['n_images']} images "
            f"({row['distinct_images']} distinct) · class {esc(top_class)} (selectivity {row['class_selectivity']:.2f})"
            + (f" · part {esc(part)} {row['part_share']:.0%} of top patches, {row['part_images']} images" if row["part"] > 0 else "")
            + edge + dup)
    return (f"<div class='card'><h4>#{lid} · {label_html(row)}</h4><div class='meta'>{meta}</div>"
            f"<div class='thumbs'>{''.join(figs) or '<span class=note>never fired</span>'}</div></div>")


def legend(db: FeatureDB) -> str:
    """What every mark on a heatmap and a latent card means."""
    m = db.meta
    buf = io.BytesIO()
    colour_bar().save(buf, format="PNG")
    ranking = "its max patch activation on that image"
    dedup = m.get("dedup") or {}
    dup_text = ("near-duplicate images (a crop, resize or re-encoding of one photo, docs/metrics.md) are collapsed: "
                "a list keeps the best entry of each group, and '+n near-dup.' under a heatmap counts the entries it stands for"
                if "reason" not in dedup else f"near-duplicate images are not collapsed in this analysis ({esc(dedup['reason'])})")
    return (
        "<h2>How to read the heatmaps</h2><ul class='legend'>"
        f"<li><b>Colour</b>: {png_tag(buf.getvalue(), 'colour scale', 240)} from 0 (dark, the photo shows through) to the "
        "latent's largest activation over all analysed images (pale yellow), the same scale on every image of a latent; "
        "the photo is dimmed a little so the colour reads. The map is the latent's activation on the token grid "
        f"({m['grid'][0]}x{m['grid'][1]}), upsampled over the image as the model saw it (resized, centre-cropped).</li>"
        f"<li><b>Cyan boxes</b>: grid cells whose activation is at least {BOX_REL:.0%} of the latent's largest activation "
        f"over all analysed images (not of that image's own maximum), at most {MAX_OUTLINED} per image; a weak image "
        "of a strong latent has none.</li>"
        f"<li><b>Caption</b>: the image's class · {ranking} (heatmaps show the top images ranked by max patch).</li>"
        f"<li><b>Near-duplicates</b>: {dup_text}.</li>"
        "<li><b>Labels</b>: a label is given only when a measure passes its stated threshold (class-selective, part-pure, "
        "or a CLIP phrase above the random-direction baseline; docs/metrics.md). Otherwise the latent is "
        "<span class='unlabelled'>unlabelled</span> and its <span class='guess'>best guess</span> is shown as a guess, "
        "with its score and why it is not a label.</li>"
        f"<li><span class='badge border'>border/position</span>: the latent's mean activation per edge cell of the grid "
        f"is at least {m.get('border_ratio', 4):g}x its mean per interior cell over all analysed images (padding, position "
        "or frame): it is labelled so, and its content evidence is only a guess.</li></ul>"
    )


def border(db: FeatureDB) -> str:
    entry = db.meta["summary"].get("border")
    if entry is None:
        return ("<h2>Border and position units</h2><p class='note'>Not measured: the analysed tokens have no grid with "
                "interior cells.</p>")
    return f"<h2>Border and position units</h2>{_comparison(entry, 'Border/position units')}"


SEEN = "(SELECT COUNT(*) FROM top_examples t WHERE t.latent = latents.id AND t.ranking = 'max') >= ?"
"""SQL: the latent fired on at least ? images (a share of 100% over one image says nothing)."""


def selective(db: FeatureDB, ov: Overlays, n: int, n_images: int) -> str:
    seen = min(n_images, db.meta["top"])
    rows = db.query(f"SELECT * FROM latents WHERE freq > 0 AND top_class >= 0 ORDER BY class_selective DESC, {SEEN} DESC, "
                    "freq > ?, class_selectivity DESC, max_act DESC LIMIT ?", seen, db.meta["dense_freq"], n)
    classes = db.names("classes")
    cards = "".join(card(db, ov, r, n_images, classes) for r in rows)
    return ("<h2>Class selectivity</h2>" + _comparison(db.meta["summary"].get("class_selective"), "Class-selective units")
            + "<p class='note'>Median index: over the units seen on enough images, whether or not they pass.</p>"
            "<p>The selectivity index compares a unit's mean activation on its top class with its mean over the other "
            "classes (per token of each class, so class frequency does not count): 0 when it fires alike on every class, "
            "1 when only on one. Below, the most selective latents with heatmaps of their top images (ranked by max "
            "patch activation); class-selective ones first, dense latents and latents seen on fewer images than shown "
            f"come after.</p><div class='cards'>{cards}</div>")


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
    rows = db.query("SELECT id, label, class_selectivity, top_class FROM latents WHERE class_selective = 1 "
                    "ORDER BY top_class, class_selectivity DESC")
    counts = {r["id"]: (r["n_images"], r["n_tokens"]) for r in db.query("SELECT * FROM classes")}
    by_class: dict[int, list[sqlite3.Row]] = {}
    for r in rows:
        by_class.setdefault(r["top_class"], []).append(r)
    items = []
    for c, name in enumerate(classes):
        lat = by_class.get(c, [])
        chips = "".join(f"<span class='chip'>#{r['id']} {esc(r['label'] or '(unlabelled)')} {r['class_selectivity']:.2f}</span>"
                        for r in lat[:per])
        more = f" <span class='note'>+{len(lat) - per} more</span>" if len(lat) > per else ""
        items.append(f"<tr><td>{esc(name)}</td><td>{counts.get(c, (0, 0))[0]}</td><td>{len(lat)}</td><td>{chips or '-'}{more}</td></tr>")
    return ("<h2>Latents per class</h2><p>The class-selective latents of each class, most selective first (selectivity "
            "index after the latent).</p><table class='grid'><tr><th>class</th><th>images</th><th>selective latents</th>"
            f"<th>most selective</th></tr>{''.join(items)}</table>")
