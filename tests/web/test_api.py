"""The JSON API of visae serve (docs/web.md) on a small real run: every endpoint, filters against the DB,
PNG caching, steering, and bad input (4xx with a message, never a 5xx, the server serving on)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from web_helpers import snapshot
from PIL import Image

from visae.analysis.db import FeatureDB

RUN_KEYS = {"id", "name", "path", "backbone", "layer", "n_latents", "n_images", "grid", "has_steer", "has_eval", "classes", "parts"}
STEER_KEYS = {"before", "after", "probs_before", "probs_after", "true", "margin_before", "margin_after", "flip", "kl", "maps",
              "segmentation"}  # fmt: skip


def still_serving(client) -> None:
    r = client.get("/api/runs")
    assert r.status_code == 200 and r.json()[0]["id"] == 0


def refused(client, r, status: int | tuple[int, ...]) -> str:
    """The response is the 4xx ``status`` with a {"detail": text} body, and the server still answers."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    still_serving(client)
    return detail


def png(r) -> Image.Image:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(r.content))
    img.load()
    return img


@pytest.fixture(scope="module")
def db(web_run):
    with FeatureDB(web_run["run"]) as d:
        yield d


# --- runs, overview, plots -------------------------------------------------------------------------


def test_runs(client, web_run, db):
    (run,) = client.get("/api/runs").json()
    assert set(run) == RUN_KEYS
    assert run["id"] == 0 and run["n_latents"] == db.meta["n_latents"] and run["grid"] == list(db.grid)
    assert run["has_steer"] is True and run["has_eval"] is False
    assert run["classes"] == db.names("classes") and run["parts"] == db.names("parts")
    assert run["n_images"] == db.meta["summary"]["n_images"]


def test_overview_and_plots(client):
    ov = client.get("/api/runs/0/overview").json()
    assert set(ov) == {"summary", "headlines", "heldout", "steer", "eval", "plots"}
    assert ov["summary"]["n_latents"] == 64 and ov["headlines"]
    assert ov["steer"] and all(isinstance(v, str) for v in ov["steer"].values())
    assert ov["eval"] is None
    assert {"curves", "suppression", "dose", "ablation", "segmentation"} <= set(ov["plots"])
    for name in ov["plots"]:
        r = client.get(f"/api/runs/0/plots/{name}")
        png(r)
        assert client.get(f"/api/runs/0/plots/{name}", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert "no plot" in refused(client, client.get("/api/runs/0/plots/metrics"), 404)


@pytest.mark.parametrize("name", ["..", "%2e%2e", "..%2f..%2fvisae.json", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2Fetc%2Fpasswd",
                                  "/etc/passwd", "steer%2Fdose.png", "plots/curves.png", "curves.png", "%00curves", "..%5c..%5cwin.ini"])
def test_plot_traversal_refused(client, name):
    r = client.get(f"/api/runs/0/plots/{name}")
    assert 400 <= r.status_code < 500, (name, r.status_code)
    assert r.headers.get("content-type") != "image/png" and b"root:" not in r.content
    still_serving(client)


def test_symlinks_out_of_the_run_are_not_followed(web_run, tmp_path):
    """A plot that is a symlink out of the run, or under a linked folder, is neither listed nor served."""
    from fastapi.testclient import TestClient

    from visae.web.app import create_app
    from visae.web.config import ServeConfig

    run = tmp_path / "run"
    shutil.copytree(web_run["run"], run, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    shutil.copy(run / "steer" / "dose.png", secret)
    (run / "steer" / "dose.png").unlink()
    (run / "steer" / "dose.png").symlink_to(secret)
    shutil.copytree(run / "plots", outside / "plots")
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(outside / "plots", target_is_directory=True)
    (run / "steer" / "summary.json").unlink()
    (run / "steer" / "summary.json").symlink_to("/etc/passwd")
    with TestClient(create_app(ServeConfig(runs=[run], device="cpu"))) as c:
        ov = c.get("/api/runs/0/overview").json()
        assert "dose" not in ov["plots"] and "curves" not in ov["plots"] and "suppression" in ov["plots"]
        assert ov["steer"] is None
        for name in ("dose", "curves", "density"):
            assert c.get(f"/api/runs/0/plots/{name}").status_code == 404
        assert c.get("/api/runs").json()[0]["has_steer"] is False


# --- the feature list ---------------------------------------------------------------------------------


def ids(client, query: str) -> tuple[int, list[int]]:
    r = client.get(f"/api/runs/0/features?{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    return body["total"], [row["id"] for row in body["items"]]


def band(freq: float) -> str:
    return "dead" if not freq > 0 else "rare" if freq < 0.001 else "low" if freq < 0.01 else "mid" if freq < 0.1 else "dense"


def test_feature_list_rows(client, db):
    body = client.get("/api/runs/0/features").json()
    assert set(body) == {"total", "offset", "limit", "items"}
    assert body["total"] == 64 and body["offset"] == 0 and body["limit"] == 50 and len(body["items"]) == 50
    row = body["items"][0]
    assert {"id", "freq", "max_act", "label", "guess", "band", "class_name", "part_name", "class_selectivity", "part_share",
            "label_source"} <= set(row)  # fmt: skip
    ref = dict(db.latent(0))
    assert row["id"] == 0 and row["freq"] == pytest.approx(ref["freq"]) and row["band"] == band(ref["freq"])


@pytest.mark.parametrize("sort", ["id", "freq", "max_act", "class_selectivity", "part_share"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_and_pages(client, db, sort, order):
    rows = [dict(r) for r in db.latents()]
    sign = -1 if order == "desc" else 1
    key = (lambda r: (r["id"] * sign,)) if sort == "id" else (lambda r: (r[sort] is None, sign * (r[sort] or 0), r["id"]))
    want = [r["id"] for r in sorted(rows, key=key)]
    got = []
    for offset in range(0, 64, 10):
        total, page = ids(client, f"sort={sort}&order={order}&offset={offset}&limit=10")
        assert total == 64 and len(page) == min(10, 64 - offset)
        got += page
    assert got == want
    assert ids(client, f"sort={sort}&order={order}&offset=60&limit=500") == (64, want[60:])
    assert ids(client, f"sort={sort}&offset=64&limit=5") == (64, [])


def test_filters(client, db):
    rows = [dict(r) for r in db.latents()]
    for b in ("dead", "rare", "low", "mid", "dense"):
        want = [r["id"] for r in rows if band(r["freq"]) == b]
        assert ids(client, f"band={b}&limit=500") == (len(want), want)
    for sel, col in (("class", "class_selective"), ("part", "part_pure"), ("border", "border")):
        want = [r["id"] for r in rows if r[col]]
        assert ids(client, f"selective={sel}&limit=500") == (len(want), want)
    parts = db.names("parts")
    for p in set(r["part"] for r in rows if r["part_images"] > 0):
        want = [r["id"] for r in rows if r["part"] == p and r["part_images"] > 0]
        assert ids(client, f"part={parts[p]}&limit=500") == (len(want), want)
    sources = {r["label_source"] for r in rows}
    for s in sources:
        want = [r["id"] for r in rows if r["label_source"] == s]
        if s:
            assert ids(client, f"label_source={s}&limit=500") == (len(want), want)
    guess = next(r["guess"] for r in rows if r["guess"])
    word = guess[1:4]
    want = [r["id"] for r in rows if word.lower() in r["label"].lower() or word.lower() in r["guess"].lower()]
    assert ids(client, f"q={word}&limit=500") == (len(want), want)
    total, got = ids(client, "q=7&limit=500")
    assert 7 in got and total == len(got)
    assert ids(client, "q=%25%25&limit=500") == (0, [])  # '%' is a literal, not a wildcard
    combined = [r["id"] for r in rows if band(r["freq"]) == "dense" and r["part"] == 0 and r["part_images"] > 0]
    assert ids(client, f"band=dense&part={parts[0]}&sort=freq&order=asc&limit=500")[0] == len(combined)


@pytest.mark.parametrize("query", ["limit=501", "limit=-1", "offset=-1", "offset=99999999999999999999", "sort=label", "order=up",
                                   "band=huge", "selective=yes", "limit=abc", "q=" + "x" * 201])
def test_bad_list_queries(client, query):
    refused(client, client.get(f"/api/runs/0/features?{query}"), 422)


def test_unknown_part_and_run(client):
    assert "no part" in refused(client, client.get("/api/runs/0/features?part=rudder"), 404)
    for run in ("1", "-1", "99999999999999999999999"):
        assert "not served" in refused(client, client.get(f"/api/runs/{run}/features"), 404)
    refused(client, client.get("/api/runs/zero/features"), 422)


# --- feature pages and heatmaps -------------------------------------------------------------------------


def test_feature_page(client, db, web_run):
    sup = json.loads((web_run["run"] / "steer" / "suppression.json").read_text())
    tested = sup["latents"][0]["latent"]
    f = client.get(f"/api/runs/0/features/{tested}").json()
    assert {"id", "band", "top", "histogram", "classes", "part", "steer", "eval"} <= set(f)
    assert set(f["top"]) == set(db.meta["rankings"])
    for ranking, rows in f["top"].items():
        ref = db.top_examples(tested, ranking)
        assert [r["image_index"] for r in rows] == [r["image_index"] for r in ref]
        assert rows and set(rows[0]) == {"rank", "image_index", "image_id", "label", "class", "score"}
    assert f["histogram"]["counts"] == db.histogram(tested).tolist()
    assert f["histogram"]["edges"] == db.meta["hist_edges"]
    masses = [c["mass"] for c in f["classes"]]
    assert len(masses) <= 10 and masses == sorted(masses, reverse=True)
    assert f["steer"]["latent"] == tested and "suppress" in f["steer"]
    assert f["eval"] == []
    assert f["part"] in db.names("parts") + [None]
    untested = next(i for i in range(64) if i not in {r["latent"] for r in sup["latents"]})
    assert client.get(f"/api/runs/0/features/{untested}").json()["steer"] is None


@pytest.mark.parametrize("feature,status", [("64", 404), ("-1", 404), ("99999999999999999999999", 404), ("abc", 422), ("1.5", 422)])
def test_unknown_feature(client, feature, status):
    refused(client, client.get(f"/api/runs/0/features/{feature}"), status)
    refused(client, client.get(f"/api/runs/0/features/{feature}/heatmap/max/0.png"), status)


def test_heatmap(client, db):
    latent = int(np.argmax(db.column("max_act")))
    r = client.get(f"/api/runs/0/features/{latent}/heatmap/max/0.png")
    assert png(r).size == (160, 160)
    tag = r.headers["etag"]
    assert tag and "max-age" in r.headers["cache-control"]
    again = client.get(f"/api/runs/0/features/{latent}/heatmap/max/0.png", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    other = client.get(f"/api/runs/0/features/{latent}/heatmap/{db.meta['rankings'][-1]}/1.png")
    png(other)
    assert other.headers["etag"] != tag
    assert "ranking" in refused(client, client.get(f"/api/runs/0/features/{latent}/heatmap/best/0.png"), 404)
    assert "rank" in refused(client, client.get(f"/api/runs/0/features/{latent}/heatmap/max/8.png"), 404)
    refused(client, client.get(f"/api/runs/0/features/{latent}/heatmap/max/-1.png"), 404)
    refused(client, client.get(f"/api/runs/0/features/{latent}/heatmap/max/99999999999999999999.png"), 404)
    refused(client, client.get(f"/api/runs/0/features/{latent}/heatmap/max/x.png"), 422)


# --- images -------------------------------------------------------------------------------------------------


def test_image_png(client):
    r = client.get("/api/runs/0/images/3.png")
    img = png(r)
    assert img.size[0] == img.size[1] and img.mode == "RGB"
    assert client.get("/api/runs/0/images/3.png", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    small = client.get("/api/runs/0/images/3.png?size=48")
    assert png(small).size == (48, 48) and small.headers["etag"] != r.headers["etag"]
    for q in ("size=8", "size=5000", "size=big"):
        refused(client, client.get(f"/api/runs/0/images/3.png?{q}"), 422)


@pytest.mark.parametrize("index,status", [("660", 404), ("-1", 404), ("99999999999999999999999", 404), ("x", 422)])
def test_unknown_image(client, index, status):
    refused(client, client.get(f"/api/runs/0/images/{index}"), status)
    refused(client, client.get(f"/api/runs/0/images/{index}.png"), status)


def test_image_page(client, db):
    H, W = db.grid
    page = client.get("/api/runs/0/images/7").json()
    assert set(page) == {"image_index", "image_id", "label", "class", "grid", "top", "cells"}
    assert page["image_index"] == 7 and page["image_id"] == "train/000007" and page["grid"] == [H, W]
    assert page["class"] == db.names("classes")[page["label"]]
    assert len(page["cells"]) == H * W and all(len(c) <= 5 for c in page["cells"])
    assert page["top"] and set(page["top"][0]) == {"latent", "max", "label"}
    best = max(v for cell in page["cells"] for _, v in cell)
    assert page["top"][0]["max"] == pytest.approx(best)


# --- steering -------------------------------------------------------------------------------------------------


def steer(client, body) -> dict:
    r = client.post("/api/runs/0/steer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == STEER_KEYS
    return out


def test_steer_changes_probs(client, db):
    H, W = db.grid
    page = client.get("/api/runs/0/images/7").json()
    latent = page["top"][0]["latent"]
    out = steer(client, {"image_index": 7, "edits": [{"latent": latent, "scale": -10, "where": "all"}]})
    assert len(out["before"]) == 5 and set(out["before"][0]) == {"class", "p"}
    assert len(out["probs_before"]) == len(db.names("classes")) and sum(out["probs_after"]) == pytest.approx(1.0)
    assert out["probs_after"] != out["probs_before"] and out["kl"] > 0
    assert out["true"] == page["class"]
    assert isinstance(out["margin_before"], float) and out["margin_after"] != out["margin_before"]
    m = out["maps"][str(latent)]
    assert np.array(m["before"]).shape == (H, W) and np.array(m["after"]).shape == (H, W)
    assert np.max(m["before"]) == pytest.approx(page["top"][0]["max"], rel=1e-4)
    seg = out["segmentation"]
    assert seg is not None and seg["parts"][: len(db.names("parts"))] == db.names("parts")
    assert np.array(seg["before"]).shape == (H, W) and np.array(seg["after"]).shape == (H, W)
    cells = steer(client, {"image_index": 7, "edits": [{"latent": latent, "scale": 3, "where": "cells", "cells": [[0, 0], [1, 2]]},
                                                       {"latent": latent, "scale": 0, "where": "active"}]})  # fmt: skip
    assert cells["probs_after"] != out["probs_after"]


def test_steer_silent_latent_at_zero_changes_nothing(client):
    page = client.get("/api/runs/0/images/7").json()
    firing = {lat for cell in page["cells"] for lat, _ in cell}
    silent = next(i for i in range(64) if i not in firing)
    out = steer(client, {"image_index": 7, "edits": [{"latent": silent, "scale": 0}]})
    assert out["probs_after"] == out["probs_before"] and out["flip"] is False and out["kl"] == pytest.approx(0, abs=1e-12)
    assert out["segmentation"]["after"] == out["segmentation"]["before"]
    assert np.all(np.array(out["maps"][str(silent)]["after"]) == 0)
    none = steer(client, {"image_index": 7, "edits": []})
    assert none["probs_after"] == none["probs_before"] and none["maps"] == {}


BAD_BODIES = [
    ('{"image_index": 7, "edits": [', 422),  # malformed JSON
    ("not json", 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": NaN}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": Infinity}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": -Infinity}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": "nan"}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": "inf"}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1e400}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 20.5}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "where": "cls"}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "where": "cells"}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "where": "cells", "cells": []}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "where": "cells", "cells": [[8, 0]]}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "where": "cells", "cells": [[-1, 0]]}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "cells": [[0, 0]]}]}', 422),
    ('{"image_index": 7, "edits": [{"latent": 3, "scale": 1, "op": "add"}]}', 422),
    ('{"image_index": "seven", "edits": []}', 422),
    ('{"edits": []}', 422),
    ("[]", 422),
    ("null", 422),
    ('{"image_index": 7, "edits": [{"latent": 64, "scale": 1}]}', 404),
    ('{"image_index": 7, "edits": [{"latent": -1, "scale": 1}]}', 404),
    ('{"image_index": 7, "edits": [{"latent": 99999999999999999999999, "scale": 1}]}', 404),
    ('{"image_index": 660, "edits": []}', 404),
    ('{"image_index": -3, "edits": []}', 404),
]


@pytest.mark.parametrize("body,status", BAD_BODIES)
def test_bad_steer_bodies(client, body, status):
    r = client.post("/api/runs/0/steer", content=body, headers={"content-type": "application/json"})
    refused(client, r, status)


def test_too_many_edits_and_big_bodies(client):
    edits = [{"latent": i, "scale": 1.0} for i in range(17)]
    assert "edits" in refused(client, client.post("/api/runs/0/steer", json={"image_index": 7, "edits": edits}), 422)
    steer(client, {"image_index": 7, "edits": edits[:16]})
    big = json.dumps({"image_index": 7, "edits": [], "pad": "x" * 1_000_000})
    refused(client, client.post("/api/runs/0/steer", content=big, headers={"content-type": "application/json"}), 413)

    def chunks():  # no Content-Length: the limit is counted as the body streams in
        for _ in range(100):
            yield b"x" * 10_000

    refused(client, client.post("/api/runs/0/steer", content=chunks(), headers={"content-type": "application/json"}), 413)
    refused(client, client.post("/api/runs/5/steer", json={"image_index": 7, "edits": []}), 404)


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/runs", "/api/runs/{run}/overview", "/api/runs/{run}/plots/{name}", "/api/runs/{run}/features",
              "/api/runs/{run}/features/{feature}", "/api/runs/{run}/features/{feature}/heatmap/{ranking}/{rank}.png",
              "/api/runs/{run}/images/{index}.png", "/api/runs/{run}/images/{index}", "/api/runs/{run}/steer"):  # fmt: skip
        assert p in paths, p
    assert "SteerIn" in spec["components"]["schemas"] and "SteerOut" in spec["components"]["schemas"]


def test_zz_run_unchanged(client, web_run):
    """After every request above the run holds the same files, with the same sizes and times: nothing was written."""
    assert snapshot(web_run["run"]) == web_run["snapshot"]


def test_config_checks():
    from visae.errors import VisaeError
    from visae.web.config import ServeConfig

    with pytest.raises(VisaeError):
        ServeConfig.build(runs=[])
    with pytest.raises(VisaeError):
        ServeConfig.build(runs=[Path(".")], port=70000)
    assert ServeConfig.build(runs=[Path(".")]).host == "127.0.0.1"


def test_foreign_host_names_refused(client):
    """Bound to loopback, the server answers only local host names (no DNS rebinding)."""
    assert client.get("/api/runs", headers={"host": "evil.example:8000"}).status_code == 400
    assert client.get("/api/runs", headers={"host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/api/runs", headers={"host": "localhost"}).status_code == 200


def test_concurrent_requests_agree_with_sequential_ones(client):
    """Eight threads at once (steering with different edits, lists, pages, heatmaps) get what one at a time gets:
    the model lock keeps one edit's hook out of another's forward, each thread has its own DB connection."""
    from concurrent.futures import ThreadPoolExecutor

    page = client.get("/api/runs/0/images/9").json()
    latents = [t["latent"] for t in page["top"][:4]]
    calls = [("post", "/api/runs/0/steer", {"image_index": 9, "edits": [{"latent": lat, "scale": s}]})
             for lat in latents for s in (-4.0, 3.0)]  # fmt: skip
    calls += [("get", f"/api/runs/0/features?sort=freq&order=desc&offset={o}&limit=7", None) for o in (0, 7, 14)]
    calls += [("get", f"/api/runs/0/features/{i}", None) for i in (1, 2)]
    calls += [("get", f"/api/runs/0/features/{latents[0]}/heatmap/max/{r}.png", None) for r in (0, 1)]

    def do(call):
        method, url, body = call
        r = client.post(url, json=body) if method == "post" else client.get(url)
        assert r.status_code == 200, r.text
        return r.json() if method == "post" or not url.endswith(".png") else r.content

    sequential = [do(c) for c in calls]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(do, calls * 2))
    assert parallel == sequential * 2
