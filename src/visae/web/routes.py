"""The JSON API of ``visae serve`` (docs/web.md): typed requests and responses, so /docs documents them.

Every parameter is validated: a bad one is a 4xx with ``{"detail": "what was wrong; what to do"}``.
Runs, features, images and rankings are named by ids; the only file names are the plots', looked up
in ``visae.web.safety``'s allow-list.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from visae.errors import VisaeError
from visae.web import safety
from visae.web.state import NotFound, RunState, band_of, etag, png_bytes

MAX_LIMIT = 500
MAX_EDITS = 16
MAX_SCALE = 20.0
BIG = 2**31 - 1
"""Largest offset accepted (sqlite takes 64-bit integers; nothing here needs more)."""
HEATMAP_SIZE = 160
TOP_CLASSES = 10
TOP_LATENTS = 20
PER_CELL = 5


class BadInput(VisaeError):
    """A well-formed request the run cannot take (422)."""


# --- response models -------------------------------------------------------------------------------


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RunOut(BaseModel):
    id: int
    name: str
    path: str
    backbone: str
    layer: str
    n_latents: int
    n_images: int
    grid: list[int] | None = Field(description="[H, W] of the activation maps, or null for a layer without a grid")
    has_steer: bool
    has_eval: bool
    classes: list[str]
    parts: list[str] | None


class OverviewOut(BaseModel):
    summary: dict[str, Any] = Field(description="the analysis summary (feature DB meta 'summary')")
    headlines: dict[str, str | None] = Field(description="the summary's comparisons, one line each")
    heldout: dict[str, Any] | None = Field(description="the SAE's held-out metrics, null when not recorded")
    steer: dict[str, str] | None = Field(description="headline rows of RUN/steer/summary.json, null before visae steer-eval")
    eval: dict[str, Any] | None = Field(description="headline of RUN/eval/summary.json, null before visae eval")
    plots: list[str] = Field(description="names for /api/runs/{RUN}/plots/{NAME}")


class FeatureRow(Open):
    """A latent's row of the feature DB (every column of its latents table) plus band, class_name, part_name."""

    id: int
    freq: float | None
    max_act: float | None
    label: str
    guess: str
    band: str
    class_name: str | None
    part_name: str | None


class FeatureList(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[FeatureRow]


class TopImage(BaseModel):
    rank: int
    image_index: int
    image_id: str
    label: int
    class_: str | None = Field(alias="class")
    score: float | None
    model_config = ConfigDict(populate_by_name=True)


class Histogram(BaseModel):
    edges: list[float]
    counts: list[int]


class ClassMass(BaseModel):
    class_: int = Field(alias="class")
    name: str | None
    mass: float | None
    model_config = ConfigDict(populate_by_name=True)


class FeatureOut(FeatureRow):
    top: dict[str, list[TopImage]]
    histogram: Histogram
    classes: list[ClassMass]
    part: Any = Field(description="the name of the latent's part (the DB's part id is in part_id)")
    part_id: int | None
    steer: dict[str, Any] | None
    eval: list[dict[str, Any]]


class CellLatent(BaseModel):
    latent: int
    max: float
    label: str


class ImageOut(BaseModel):
    image_index: int
    image_id: str
    label: int
    class_: str | None = Field(alias="class")
    grid: list[int] | None
    top: list[CellLatent]
    cells: list[list[tuple[int, float]]] = Field(description="per grid cell (row-major), its top 5 latents as [latent, value]")
    model_config = ConfigDict(populate_by_name=True)


class EditIn(BaseModel):
    """One edit: set ``latent`` to ``scale`` × its max activation at the tokens ``where`` names."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    latent: int
    scale: float = Field(ge=-MAX_SCALE, le=MAX_SCALE)
    where: Literal["all", "active", "cells"] = "all"
    cells: list[tuple[int, int]] | None = Field(None, max_length=4096)


class SteerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    image_index: int
    edits: list[EditIn] = Field(default_factory=list, max_length=MAX_EDITS)


class ClassP(BaseModel):
    class_: str = Field(alias="class")
    p: float
    model_config = ConfigDict(populate_by_name=True)


class Maps(BaseModel):
    before: list[list[float]]
    after: list[list[float]]


class Segmentation(BaseModel):
    before: list[list[int]]
    after: list[list[int]]
    parts: list[str]


class SteerOut(BaseModel):
    before: list[ClassP]
    after: list[ClassP]
    probs_before: list[float]
    probs_after: list[float]
    true: str | None
    margin_before: float | None
    margin_after: float | None
    flip: bool
    kl: float | None
    maps: dict[str, Maps]
    segmentation: Segmentation | None


# --- helpers -----------------------------------------------------------------------------------------


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (and numpy scalar) made JSON-safe: NaN and infinities become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return finite(obj.item())
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    return obj


def png_response(request: Request, data: bytes, tag: str) -> Response:
    """A PNG with its ETag and Cache-Control, or 304 when the client already has it."""
    headers = {"ETag": tag, "Cache-Control": "private, max-age=3600"}
    match = request.headers.get("if-none-match", "")
    if match and (match.strip() == "*" or tag in [t.strip().removeprefix("W/") for t in match.split(",")]):
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type="image/png", headers=headers)


def make_router(states: list[RunState]) -> APIRouter:
    api = APIRouter(prefix="/api")

    def run_of(run: int) -> RunState:
        if not 0 <= run < len(states):
            raise NotFound(f"run {run} is not served", f"runs are 0..{len(states) - 1} (GET /api/runs lists them)")
        return states[run]

    def feature_row(rs: RunState, row: Any) -> dict[str, Any]:
        d = dict(row)
        top_class, part = d.get("top_class", -1), d.get("part", -1)
        d["band"] = band_of(d["freq"] if d["freq"] is not None else 0.0)
        d["class_name"] = rs.classes[top_class] if 0 <= top_class < len(rs.classes) else None
        d["part_name"] = rs.parts[part] if rs.parts and 0 <= part < len(rs.parts) and d.get("part_images", 1) else None
        return finite(d)

    @api.get("/runs", response_model=list[RunOut])
    def runs() -> list[dict[str, Any]]:
        """The served runs."""
        out = []
        for rs in states:
            m = rs.meta
            out.append({
                "id": rs.index, "name": rs.path.name, "path": str(rs.path), "backbone": str(m.get("backbone", "")),
                "layer": str(m.get("layer", "")), "n_latents": rs.n_latents,
                "n_images": int((m.get("summary") or {}).get("n_images") or 0),
                "grid": list(rs.grid) if rs.has_grid else None,
                "has_steer": safety.inside(rs.path, "steer/summary.json") is not None,
                "has_eval": safety.inside(rs.path, "eval/summary.json") is not None,
                "classes": rs.classes, "parts": rs.parts,
            })  # fmt: skip
        return out

    @api.get("/runs/{run}/overview", response_model=OverviewOut)
    def overview(run: int) -> dict[str, Any]:
        """The analysis summary and headlines, held-out metrics, steer-eval and eval headlines, and the plots."""
        from visae.analysis.run import headlines
        from visae.steering.headline import headline_rows

        rs = run_of(run)
        summary = dict(rs.meta.get("summary") or {})
        try:
            heads = headlines(summary)
        except (KeyError, TypeError, ValueError):
            heads = {}
        steer = rs.json("steer/summary.json")
        try:
            steer_rows = headline_rows(steer) if isinstance(steer, dict) else None
        except (KeyError, TypeError, ValueError):
            steer_rows = None
        ev = rs.json("eval/summary.json")
        heldout = rs.meta.get("heldout")
        return finite({"summary": summary, "headlines": heads, "heldout": heldout if isinstance(heldout, dict) else None,
                       "steer": steer_rows, "eval": ev.get("headline") if isinstance(ev, dict) else None,
                       "plots": safety.plot_names(rs.path)})  # fmt: skip

    @api.get("/runs/{run}/plots/{name}", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def plot(run: int, name: str, request: Request) -> Response:
        """One of the run's PNG plots, by a name ``overview`` lists."""
        rs = run_of(run)
        path = safety.plot_path(rs.path, name)
        if path is None:
            raise NotFound(f"run {run} has no plot '{name}'", f"plots are {', '.join(safety.plot_names(rs.path)) or 'none yet'}")
        try:
            data, st = path.read_bytes(), path.stat()
        except OSError:
            raise NotFound(f"run {run}'s plot '{name}' cannot be read", "check the run's files") from None
        return png_response(request, data, etag("plot", path, st.st_size, st.st_mtime_ns))

    @api.get("/runs/{run}/features", response_model=FeatureList)
    def features(
        run: int,
        q: str = Query("", max_length=200, description="substring of the label or guess, or a feature id"),
        band: Literal["dead", "rare", "low", "mid", "dense"] | None = Query(None),
        sort: Literal["id", "freq", "max_act", "class_selectivity", "part_share"] = "id",
        order: Literal["asc", "desc"] = "asc",
        part: str | None = Query(None, max_length=200, description="a part name"),
        label_source: str | None = Query(None, max_length=200),
        selective: Literal["class", "part", "border"] | None = Query(None),
        offset: int = Query(0, ge=0, le=BIG),
        limit: int = Query(50, ge=0, le=MAX_LIMIT),
    ) -> Any:
        """A page of the feature list: filtered and sorted in SQL."""
        rs = run_of(run)
        part_id = None
        if part:
            if part not in rs.part_ids:
                raise NotFound(f"run {run} has no part '{part}'",
                               f"parts are {', '.join(rs.part_ids)}" if rs.part_ids else "this run's dataset has no parts")  # fmt: skip
            part_id = rs.part_ids[part]
        t = rs.table
        hits = t.select(q=q.strip(), band=band, part=part_id, label_source=label_source, selective=selective, sort=sort, order=order)
        page = [int(i) for i in t.id_N[hits[offset : offset + limit]]]
        by_id = {}
        if page:
            marks = ", ".join("?" * len(page))
            by_id = {r["id"]: r for r in rs.db().query(f"SELECT * FROM latents WHERE id IN ({marks})", *page)}
        total = len(hits)
        rows = [by_id[i] for i in page]
        # returned as a response, so FastAPI skips re-validating up to 500 rows (the model documents the shape)
        return JSONResponse({"total": total, "offset": offset, "limit": limit, "items": [feature_row(rs, r) for r in rows]})

    @api.get("/runs/{run}/features/{feature}", response_model=FeatureOut, response_model_by_alias=True)
    def feature(run: int, feature: int) -> dict[str, Any]:
        """One feature: its row, top images per ranking, histogram, top classes, part, steer and eval results."""
        rs = run_of(run)
        rs.check_latent(feature)
        db = rs.db()
        row = feature_row(rs, db.latent(feature))
        top: dict[str, list[dict[str, Any]]] = {}
        for ranking in rs.rankings:
            rows = db.query("SELECT rank, image_index, image_id, label, score FROM top_examples "
                            "WHERE latent = ? AND ranking = ? ORDER BY rank", feature, ranking)  # fmt: skip
            top[ranking] = [dict(r) | {"class": rs.classes[r["label"]] if 0 <= r["label"] < len(rs.classes) else None} for r in rows]
        counts = db.histogram(feature).tolist()
        masses = [{"class": c, "name": rs.classes[c] if 0 <= c < len(rs.classes) else None, "mass": m}
                  for c, m in db.class_mass(feature)[:TOP_CLASSES]]  # fmt: skip
        sup = rs.json("steer/suppression.json")
        steer = next((r for r in (sup or {}).get("latents", []) if isinstance(r, dict) and r.get("latent") == feature), None) \
            if isinstance(sup, dict) else None  # fmt: skip
        concepts = rs.json("eval/concepts.json")
        ev = []
        for c in (concepts or {}).get("concepts", []) if isinstance(concepts, dict) else []:
            by = (c.get("by") or {}).get("sae") if isinstance(c, dict) else None
            if isinstance(by, dict) and by.get("unit") == feature:
                ev.append({k: c.get(k) for k in ("kind", "value", "level", "positives", "chance_ap")} | by)
        return finite(row | {"top": top, "histogram": {"edges": list(rs.meta.get("hist_edges") or []), "counts": counts},
                             "classes": masses, "part": row["part_name"], "part_id": row.get("part"), "steer": steer,
                             "eval": ev})  # fmt: skip

    @api.get("/runs/{run}/features/{feature}/heatmap/{ranking}/{rank}.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})  # fmt: skip
    def heatmap(run: int, feature: int, ranking: str, rank: int, request: Request) -> Response:
        """The heatmap overlay of one of the feature's top images (rendered in memory, cached)."""
        from visae.analysis.db import blob_map
        from visae.analysis.heatmaps import render

        rs = run_of(run)
        rs.check_latent(feature)
        rs.check_ranking(ranking)
        if not 0 <= rank <= BIG:
            raise NotFound(f"feature {feature} has no rank {rank} under '{ranking}'", "ranks start at 0 (the feature page lists them)")
        key = ("heat", feature, ranking, rank)

        def make() -> bytes:
            db = rs.db()
            rows = db.query("SELECT image_index, map FROM top_examples WHERE latent = ? AND ranking = ? AND rank = ?",
                            feature, ranking, rank)  # fmt: skip
            if not rows:
                raise NotFound(f"feature {feature} has no rank {rank} under '{ranking}'", "the feature page lists its top images")
            vmax = float(db.latent(feature)["max_act"])
            img = render(rs.images.view(rows[0]["image_index"]), blob_map(rows[0]["map"], *rs.grid), vmax, HEATMAP_SIZE)
            return png_bytes(img)

        return png_response(request, rs.pngs.get(key, make), etag(rs.db_id, *key))

    @api.get("/runs/{run}/images/{index}.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def image_png(
        run: int, index: int, request: Request,
        size: int | None = Query(None, ge=16, le=1024, description="side in pixels (default: the model's input size)"),
    ) -> Response:  # fmt: skip
        """The store image as the model saw it (resized and centre-cropped)."""
        from PIL import Image

        rs = run_of(run)
        rs.check_image(index)
        key = ("image", index, size)

        def make() -> bytes:
            rs.sample(index)
            view = rs.images.view(index)
            if view is None:
                raise NotFound(f"image {index} of run {run} cannot be read", "pick another image")
            img = Image.fromarray(view).convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return png_bytes(img)

        return png_response(request, rs.pngs.get(key, make), etag(rs.meta.get("dataset"), rs.meta.get("split"), *key))

    @api.get("/runs/{run}/images/{index}", response_model=ImageOut, response_model_by_alias=True)
    def image(run: int, index: int) -> dict[str, Any]:
        """One image: its id, label, and the latents that fire on it, overall and per grid cell."""
        import torch

        rs = run_of(run)
        s = rs.sample(index)
        with rs.model() as st:
            x_BND = rs.clean_pass(index)["x_BND"]
            if st.grid is not None:
                codes_GS = st.patch_codes(x_BND)[0]
            else:
                from visae.analysis.inputs import encode

                codes_GS = encode(st.sae, x_BND.reshape(-1, x_BND.shape[-1]).to(st.backbone.device)).cpu()
        codes_GS = torch.nan_to_num(codes_GS.float())
        max_S = codes_GS.amax(0)
        vals, idx = max_S.topk(min(TOP_LATENTS, len(max_S)))
        top = [{"latent": int(i), "max": float(v), "label": rs.labels.get(int(i), "")} for v, i in zip(vals, idx) if v > 0]
        cv, ci = codes_GS.topk(min(PER_CELL, codes_GS.shape[1]), dim=1)
        cells = [[(int(i), float(v)) for v, i in zip(vr, ir) if v > 0] for vr, ir in zip(cv.tolist(), ci.tolist())]
        label = int(s.label) if s.label is not None else -1
        return finite({"image_index": index, "image_id": str(s.image_id), "label": label,
                       "class": rs.classes[label] if 0 <= label < len(rs.classes) else None,
                       "grid": list(rs.grid) if rs.has_grid else None, "top": top,
                       "cells": cells if rs.has_grid else []})  # fmt: skip

    @api.post("/runs/{run}/steer", response_model=SteerOut, response_model_by_alias=True)
    def steer(run: int, body: SteerIn) -> dict[str, Any]:
        """Set latents to multiples of their max activation on one image: the class probabilities, the latents'
        maps and the patch probe's segmentation before and after."""
        from visae.steering.edit import Edit, LatentOp
        from visae.steering.effects import effects, top_classes
        from visae.steering.splice import splice_tokens

        rs = run_of(run)
        rs.check_image(body.image_index)
        for e in body.edits:
            rs.check_latent(e.latent)
            if (e.where == "cells") != (e.cells is not None):
                raise BadInput("cells goes with where='cells' (and only with it)", "give cells: [[y, x], ...] with where='cells'")
            if e.cells is not None:
                H, W = rs.grid
                if not rs.has_grid or not e.cells:
                    raise BadInput("where='cells' needs a grid and at least one cell", "use where='all' or 'active'")
                bad = [c for c in e.cells if not (0 <= c[0] < H and 0 <= c[1] < W)]
                if bad:
                    raise BadInput(f"cell {list(bad[0])} is outside the {H}x{W} grid", f"use cells with 0 <= y < {H}, 0 <= x < {W}")
        with rs.model() as st:
            clean = rs.clean_pass(body.image_index)
            max_S = st.max_act()
            ops = [LatentOp(latents=[e.latent], op="set", value=float(e.scale) * float(max_S[e.latent]), where=e.where,
                            cells=[tuple(c) for c in e.cells] if e.cells is not None else None) for e in body.edits]  # fmt: skip
            edit = Edit(ops=ops)
            pixels = clean["imgs"].pixels_BCHW
            before_L = clean["logits_L"]
            after_L = st.logits(pixels, edit)[0] if ops else before_L
            maps: dict[str, Any] = {}
            seg = None
            if st.grid is not None:
                x_BND = clean["x_BND"]
                x2_BND = splice_tokens(x_BND, st.layout, st.sae, edit) if ops else x_BND
                H, W = st.grid
                if ops:
                    latents = edit.latents()
                    before_GU = st.patch_codes(x_BND)[0][:, latents]
                    after_GU = st.patch_codes(x2_BND)[0][:, latents]
                    for u, latent in enumerate(latents):
                        maps[str(latent)] = {"before": before_GU[:, u].reshape(H, W).tolist(),
                                             "after": after_GU[:, u].reshape(H, W).tolist()}  # fmt: skip
                probe = rs.patch_probe()
                if probe is not None:
                    n0 = st.layout.n_prefix
                    seg = {"before": probe.predict(x_BND[0, n0:]).reshape(H, W).tolist(),
                           "after": probe.predict(x2_BND[0, n0:]).reshape(H, W).tolist(), "parts": list(probe.part_names)}  # fmt: skip
            names = st.class_names
        label = int(clean["imgs"].label_B[0])
        eff = effects(before_L[None], after_L[None], clean["imgs"].label_B[:1])
        return finite({
            "before": [{"class": c, "p": p} for c, p in top_classes(before_L, names)],
            "after": [{"class": c, "p": p} for c, p in top_classes(after_L, names)],
            "probs_before": before_L.double().softmax(0).tolist(), "probs_after": after_L.double().softmax(0).tolist(),
            "true": names[label] if 0 <= label < len(names) else None,
            "margin_before": float(eff.margin_before_B[0]), "margin_after": float(eff.margin_after_B[0]),
            "flip": bool(eff.flip_B[0]), "kl": float(eff.kl_B[0]), "maps": maps, "segmentation": seg,
        })  # fmt: skip

    return api
