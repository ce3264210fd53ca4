"""What the server holds per run: the feature DB (one read-only connection per thread), the dataset's
images, the model (opened on first use, one forward at a time) and in-memory caches.

Nothing here writes into a run: heatmaps and images are rendered in memory and kept in LRU caches.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from visae.analysis.db import FeatureDB
from visae.errors import VisaeError
from visae.web import safety

BANDS = ("dead", "rare", "low", "mid", "dense")
BAND_EDGES = (0.001, 0.01, 0.1)
"""Token frequency edges of rare (< 0.1%), low (0.1-1%), mid (1-10%) and dense (>= 10%); dead: never fires."""


class NotFound(VisaeError):
    """Something the request names by id does not exist (404)."""


def band_of(freq: float) -> str:
    if not freq > 0:
        return "dead"
    return BANDS[1 + int(np.searchsorted(BAND_EDGES, freq, side="right"))]


class LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def etag(*parts: Any) -> str:
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


SORT_KEYS = ("id", "freq", "max_act", "class_selectivity", "part_share")


class LatentTable:
    """What the feature list filters and sorts on, held in memory (read once at startup): a page is then
    a few array operations, and only its rows are read from the DB."""

    def __init__(self, db: FeatureDB):
        rows = db.query("SELECT id, freq, max_act, class_selectivity, part_share, part, part_images, class_selective, "
                        "part_pure, border, label, guess, label_source FROM latents ORDER BY id")  # fmt: skip
        self.id_N = np.array([r["id"] for r in rows], dtype=np.int64)
        col = lambda k: np.array([np.nan if r[k] is None else float(r[k]) for r in rows], dtype=np.float64)  # noqa: E731
        freq_N = np.nan_to_num(col("freq"), nan=0.0)
        self.band_N = np.array([band_of(f) for f in freq_N])
        self.part_N = np.array([r["part"] if r["part_images"] else -1 for r in rows], dtype=np.int64)
        self.selective = {"class": col("class_selective") == 1, "part": col("part_pure") == 1, "border": col("border") == 1}
        self.label_source_N = np.array([r["label_source"] or "" for r in rows], dtype=object)
        self.text = [f"{r['label'] or ''}\n{r['guess'] or ''}".lower() for r in rows]
        self.order: dict[tuple[str, str], np.ndarray] = {}
        for key in SORT_KEYS:
            v_N = self.id_N.astype(np.float64) if key == "id" else col(key)
            nan_N = np.isnan(v_N)
            v_N = np.where(nan_N, 0.0, v_N)
            self.order[(key, "asc")] = np.lexsort((self.id_N, v_N, nan_N))  # missing values last, ties by id
            self.order[(key, "desc")] = np.arange(len(self.id_N))[::-1].copy() if key == "id" else np.lexsort((self.id_N, -v_N, nan_N))
        self._q = LRU(256)

    def matches(self, q: str) -> np.ndarray:
        """Latents whose label or guess holds ``q`` (any case), or whose id is ``q``."""

        def make() -> np.ndarray:
            needle = q.lower()
            hit_N = np.fromiter((needle in t for t in self.text), dtype=bool, count=len(self.text))
            if q.isascii() and q.isdigit():
                hit_N |= self.id_N == int(q)
            return hit_N

        return self._q.get(q, make)

    def select(self, *, q: str = "", band: str | None = None, part: int | None = None, label_source: str | None = None,
               selective: str | None = None, sort: str = "id", order: str = "asc") -> np.ndarray:  # fmt: skip
        """Row positions of the latents that pass every filter, in the requested order."""
        keep_N = np.ones(len(self.id_N), dtype=bool)
        if q:
            keep_N &= self.matches(q)
        if band:
            keep_N &= self.band_N == band
        if part is not None:
            keep_N &= self.part_N == part
        if label_source:
            keep_N &= self.label_source_N == label_source
        if selective:
            keep_N &= self.selective[selective]
        rows = self.order[(sort, order)]
        return rows[keep_N[rows]]


SMALL_MODEL_S = 0.02
"""A CPU model whose one-image forward takes less than this on one thread runs every request on one thread."""


def one_thread_enough(st: Any) -> int | None:
    """1 when the model is on the CPU and small enough that one image's forward on one thread is quick, else None
    (torch's default). The server runs one image at a time: for a small model, intra-op threads only add
    synchronisation, which costs 100x on a loaded machine (measured: 0.7 ms on one thread, ~100 ms on two)."""
    import time

    import torch

    if getattr(st.backbone.device, "type", str(st.backbone.device)) != "cpu":
        return None
    size = int(getattr(st.preprocess, "size", 224))
    x = torch.zeros(1, 3, size, size)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            st.backbone.forward(x)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 1 if best < SMALL_MODEL_S else None


class RunState:
    """One served run."""

    def __init__(self, index: int, path: Path, device: str = "auto", probe_images: int = 1000):
        self.index, self.path, self.device, self.probe_images = index, Path(path).absolute(), device, probe_images
        with FeatureDB(self.path) as db:  # opens and checks it (schema, meta) once
            self.db_path = db.path
            self.meta = db.meta
            self.grid = tuple(db.grid)
            self.classes = db.names("classes")
            self.parts = db.names("parts") or None
            self.part_ids = {name: i for i, name in enumerate(self.parts or [])}
            self.labels = {r["id"]: (r["label"] or r["guess"] or "") for r in db.query("SELECT id, label, guess FROM latents")}
            self.table = LatentTable(db)
        self.has_grid = bool(self.meta.get("has_grid", True))
        self.n_latents = int(self.meta["n_latents"])
        self.rankings = [str(r) for r in self.meta.get("rankings") or ["max"]]
        self.db_id = str(self.meta.get("db_id") or self.db_path.stat().st_mtime_ns)
        self._local = threading.local()
        self._images: Any = None
        self._images_lock = threading.Lock()
        self.model_lock = threading.Lock()
        """Held around every use of the model: a forward with a splice's hook must not interleave with another."""
        self._steerer: Any = None
        self._steerer_error: VisaeError | None = None
        self._threads: int | None = None
        self.pngs = LRU(512)
        self.clean = LRU(32)
        self._probe: Any = None
        self._probe_tried = False
        self._json: dict[str, tuple[int, Any]] = {}

    # --- the DB ----------------------------------------------------------------------------------

    def db(self) -> FeatureDB:
        """This thread's read-only connection (sqlite connections belong to the thread that opened them)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = FeatureDB(self.db_path)
        return db

    def check_latent(self, latent: int) -> None:
        if not 0 <= latent < self.n_latents:
            raise NotFound(f"feature {latent} is not in run {self.index}", f"features are 0..{self.n_latents - 1}")

    def check_ranking(self, ranking: str) -> None:
        if ranking not in self.rankings:
            raise NotFound(f"ranking '{ranking}' is not in run {self.index}", f"rankings are {', '.join(self.rankings)}")

    # --- files of the run ----------------------------------------------------------------------

    def json(self, rel: str) -> Any:
        """A JSON file of the run, re-read when it changes (None when absent)."""
        path = safety.inside(self.path, rel)
        if path is None:
            return None
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        hit = self._json.get(rel)
        if hit is None or hit[0] != mtime:
            hit = self._json[rel] = (mtime, safety.read_json(self.path, rel))
        return hit[1]

    # --- images ----------------------------------------------------------------------------------

    @property
    def images(self) -> Any:
        """The dataset images behind the store (``visae.analysis.inputs.Images``), opened once."""
        with self._images_lock:
            if self._images is None:
                from visae.analysis.inputs import Images

                m = self.meta
                self._images = Images(m["dataset"], m["split"], m["preprocess"])
            return self._images

    def n_images(self) -> int:
        split = self.images.split
        if split is None:
            raise NotFound(f"the dataset of run {self.index} ({self.meta['dataset']}) cannot be opened",
                           "serve the run where its dataset is")  # fmt: skip
        return len(split)

    def check_image(self, index: int) -> None:
        n = self.n_images()
        if not 0 <= index < n:
            raise NotFound(f"image {index} is not in run {self.index}", f"images are 0..{n - 1} of split '{self.meta['split']}'")

    def sample(self, index: int) -> Any:
        self.check_image(index)
        s = self.images.sample(index)
        if s is None:
            raise NotFound(f"image {index} of run {self.index} cannot be read", "pick another image")
        return s

    # --- the model -------------------------------------------------------------------------------

    def steerer(self) -> Any:
        """The run's ``Steerer`` (opened on first use; call holding ``model_lock``, or use ``model()``)."""
        if self._steerer is None:
            if self._steerer_error is not None:
                raise self._steerer_error
            from visae.steering.session import Steerer

            try:
                self._steerer = Steerer.open(self.path, device=self.device)
            except VisaeError as e:
                self._steerer_error = e
                raise
            self._threads = one_thread_enough(self._steerer)
        return self._steerer

    @contextmanager
    def model(self) -> Iterator[Any]:
        """Hold the model (``model_lock``) and give its ``Steerer``; on CPU a small model runs on one thread."""
        import torch

        with self.model_lock:
            st = self.steerer()
            before = torch.get_num_threads()
            if self._threads and self._threads != before:
                torch.set_num_threads(self._threads)
            try:
                yield st
            finally:
                if torch.get_num_threads() != before:
                    torch.set_num_threads(before)

    def clean_pass(self, index: int) -> dict[str, Any]:
        """The unedited model on one image: its ``ImageSet`` (pixels, label), layer tokens ``x_BND`` and head
        logits (cached per image: a steering slider re-sends the same image; the SAE codes, large for a wide
        SAE, are recomputed from the tokens when needed). Call holding ``model_lock``."""

        def make() -> dict[str, Any]:
            st = self.steerer()
            imgs = st.images(st.store_split, np.array([index]))
            return {"imgs": imgs, "x_BND": st.layer_tokens(imgs.pixels_BCHW), "logits_L": st.logits(imgs.pixels_BCHW)[0]}

        self.check_image(index)
        return self.clean.get(index, make)

    def patch_probe(self) -> Any:
        """The segmentation probe (trained once, on first use, on ``probe_images`` store images; None where the
        dataset has no part masks or the layer no grid). Call holding ``model_lock``."""
        if self._probe_tried:
            return self._probe
        self._probe_tried = True
        from visae.steering.segment import train_patch_probe, training_patches

        st = self.steerer()
        if st.grid is None:
            return None
        try:
            split = st.store_split
            n = len(st.split(split))
            idx = np.sort(np.random.default_rng(0).choice(n, min(self.probe_images, n), replace=False))
            chunks = (st.images(split, idx[a : a + 32]) for a in range(0, len(idx), 32))
            x_TD, y_T, _, _ = training_patches(st, chunks, len(idx), 0)
            names = list(getattr(st.dataset, "part_names", None) or [])
            G, D = st.grid[0] * st.grid[1], x_TD.shape[-1]
            import torch

            self._probe = train_patch_probe(x_TD[None], y_T[None], names, torch.zeros(0, G, D), np.zeros((0, G), dtype=np.int64))
        except VisaeError:
            self._probe = None
        return self._probe

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
