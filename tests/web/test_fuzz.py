"""Property tests: whatever the path, query or steer body, the API answers below 500 (docs/web.md: bad
input is a 4xx with a message, never a 5xx)."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ints = st.one_of(st.integers(-5, 70), st.integers(-(2**70), 2**70)).map(str)
texts = st.text(max_size=30)
raw = st.text(alphabet="./%\\?#&=;:+-_~ aZ09\u00e9\u4e2d", max_size=20)
segment = st.one_of(ints, texts.map(lambda s: quote(s, safe="")), raw.map(lambda s: quote(s, safe="/%")),
                    st.sampled_from(["..", "%2e%2e", "%2F", "max", "sum", "0", "curves", "dose", "", "1e3", "0x10", "  1"]))

GET_PATHS = [
    "/api/runs/{a}",
    "/api/runs/{a}/overview",
    "/api/runs/{a}/plots/{b}",
    "/api/runs/{a}/features",
    "/api/runs/{a}/features/{b}",
    "/api/runs/{a}/features/{b}/heatmap/{c}/{d}.png",
    "/api/runs/{a}/images/{b}.png",
    "/api/runs/{a}/images/{b}",
]
QUERY_KEYS = ["q", "band", "sort", "order", "part", "label_source", "selective", "offset", "limit", "size"]
query_values = st.one_of(ints, texts, st.sampled_from(["dead", "mid", "dense", "freq", "desc", "class", "wing", "part", "", "500", "501"]))


def check(r) -> None:
    assert r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
    if 400 <= r.status_code < 500 and r.headers.get("content-type") == "application/json":
        assert isinstance(r.json()["detail"], str)


@SETTINGS
@given(template=st.sampled_from(GET_PATHS), a=st.one_of(st.just("0"), segment), b=segment, c=segment, d=segment)
def test_get_paths(client, template, a, b, c, d):
    check(client.get(template.format(a=a, b=b, c=c, d=d)))


@SETTINGS
@given(template=st.sampled_from(["/api/runs/0/features", "/api/runs/0/images/{b}.png", "/api/runs/0/features/3"]),
       b=st.one_of(st.just("1"), ints), params=st.dictionaries(st.sampled_from(QUERY_KEYS), query_values, max_size=6))  # fmt: skip
def test_get_queries(client, template, b, params):
    check(client.get(template.format(b=b) + "?" + urlencode(params)))


@SETTINGS
@given(query=raw)
def test_raw_queries(client, query):
    check(client.get("/api/runs/0/features?" + query))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
scales = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 100),
                   st.sampled_from(["NaN", "nan", "inf", "-Infinity", "1e999", "2x", "", "0"]))  # fmt: skip
cells = st.one_of(st.none(), st.lists(st.lists(st.integers(-3, 12) | st.integers(-(2**70), 2**70), max_size=3), max_size=4), json_values)
edits = st.fixed_dictionaries(
    {"latent": st.one_of(st.integers(-3, 70), st.integers(-(2**70), 2**70), st.text(max_size=4)), "scale": scales},
    optional={"where": st.one_of(st.sampled_from(["all", "active", "cells", "cls", "mask"]), st.text(max_size=5)), "cells": cells},
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"image_index": st.one_of(st.integers(-3, 700), st.integers(-(2**70), 2**70), json_values),
                           "edits": st.one_of(st.lists(edits, max_size=18), json_values)}),  # fmt: skip
)


@SETTINGS
@given(body=bodies, run=st.sampled_from(["0", "0", "1", "-1", "x"]))
def test_steer_bodies(client, body, run):
    content = json.dumps(body, allow_nan=True)  # NaN and Infinity as JavaScript writes them
    check(client.post(f"/api/runs/{run}/steer", content=content, headers={"content-type": "application/json"}))


@SETTINGS
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_steer_bytes(client, content):
    check(client.post("/api/runs/0/steer", content=content, headers={"content-type": "application/json"}))
