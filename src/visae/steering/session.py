"""A run opened for interventions: its backbone, SAE, layer, images and the head an edit is read on.

``Steerer.open(run)`` loads what the run recorded (backbone spec, layer, preprocessing, dataset,
split) so no flag is repeated. ``steerer.images(split, indices)`` gives an ``ImageSet`` (pixels,
labels, ids and per-cell part labels where the dataset has masks); ``steerer.logits(pixels, edit)``
runs the model with the SAE spliced in (``visae.steering.splice``) and reads the head
(``visae.steering.head``): the classifier's own logits, or a linear probe where the model is not a
classifier of the dataset's classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError
from visae.progress import warn
from visae.steering.edit import Edit
from visae.steering.splice import Splice

BATCH = 256
"""Images per forward pass."""


@dataclass
class ImageSet:
    """Some images of one split, preprocessed as the store was."""

    split: str
    index_B: np.ndarray
    """Split index of each image."""
    ids: list[str]
    label_B: np.ndarray
    """Dataset label of each image (-1: none)."""
    pixels_BCHW: torch.Tensor
    """Normalised model input (float32, CPU)."""
    parts_BG: np.ndarray | None
    """Majority part label of each grid cell (row-major), where the dataset has masks (else None)."""

    def __len__(self) -> int:
        return len(self.index_B)

    def subset(self, rows: Any) -> "ImageSet":
        rows = np.asarray(rows, dtype=np.int64)
        return ImageSet(self.split, self.index_B[rows], [self.ids[r] for r in rows], self.label_B[rows],
                        self.pixels_BCHW[torch.from_numpy(rows)],
                        None if self.parts_BG is None else self.parts_BG[rows])  # fmt: skip


class Steerer:
    """Backbone + SAE + head of one SAE run, for edits, ablations and their effects."""

    def __init__(self, info: Any, backbone: Any, sae: Any, store_meta: dict[str, Any], db: Path | None, head: Any = None):
        from visae.backbones.tokens import TokenLayout
        from visae.data.transforms import Preprocess

        self.info, self.backbone, self.sae, self.store_meta = info, backbone, sae, store_meta
        self.layer = backbone.resolve_layer(info.layer)
        self.layout = backbone.layout(self.layer)
        recorded = TokenLayout.from_json(store_meta["layout"]) if "layout" in store_meta else None
        if recorded is not None and recorded.shape() != self.layout.shape():
            raise VisaeError(f"layer '{self.layer}' of {backbone.spec} now gives {self.layout.shape()}, but the run's store "
                             f"recorded {recorded.shape()}", "steer with the backbone and input size the store was extracted with")  # fmt: skip
        self.preprocess = Preprocess(**store_meta["preprocess"]) if "preprocess" in store_meta else backbone.preprocess
        self.db = db
        self.dataset_spec = str(store_meta.get("dataset") or "")
        self.store_split = str(store_meta.get("split") or "")
        self._dataset: Any = None
        self._splits: dict[str, Any] = {}
        self._ids: dict[str, dict[str, int]] = {}
        self._max_act_S: np.ndarray | None = None
        self._head = head
        self._head_wanted: tuple[str, int] = ("auto", 2000)

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, run: str | Path, *, device: str = "auto", head: str = "auto", probe_images: int = 2000) -> "Steerer":
        """Open an SAE run (or one SAE folder of it) with the backbone, layer and preprocessing it recorded."""
        from visae.analysis.db import DB_NAME
        from visae.analysis.inputs import open_sae, read_run
        from visae.backbones.base import load_backbone

        info = read_run(run)
        cfg = json.loads((info.sae_dir / "cfg.json").read_text())
        meta = dict((cfg.get("visae") or {}).get("store_meta") or {})
        if not info.backbone or not info.layer:
            raise VisaeError(f"the SAE in {info.sae_dir} does not record its backbone and layer",
                             "steer an SAE trained by visae train")  # fmt: skip
        bb = load_backbone(info.backbone, random_init=bool(meta.get("random_init")), device=device,
                           allow_position_match=bool(meta.get("position_match")))  # fmt: skip
        sae = open_sae(info.sae_dir).to(bb.device)
        db = Path(info.path) / DB_NAME
        steerer = cls(info, bb, sae, meta, db if db.is_file() else None)
        steerer._head_wanted = (head, probe_images)
        return steerer

    @property
    def head(self) -> Any:
        """The head edits are read on (``visae.steering.head``), made on first use: a probe trains only once the
        images and latents asked for have been checked."""
        if self._head is None:
            from visae.steering.head import make_head

            self._head = make_head(self, *self._head_wanted)
        return self._head

    @head.setter
    def head(self, value: Any) -> None:
        self._head = value

    @property
    def dataset(self) -> Any:
        """The dataset the store was extracted from (opened on first use)."""
        if self._dataset is None:
            from visae.data.base import open_dataset

            if not self.dataset_spec:
                raise VisaeError("the run's store does not record its dataset", "steer a run whose store visae extract wrote")
            self._dataset = open_dataset(self.dataset_spec)
        return self._dataset

    def split(self, name: str) -> Any:
        """A split of the dataset (opened once: a synthetic split parses its manifest)."""
        if name not in self._splits:
            self._splits[name] = self.dataset.split(name)
        return self._splits[name]

    @property
    def class_names(self) -> list[str]:
        return list(self._head.class_names) if self._head is not None else list(self.dataset.class_names)

    @property
    def d_sae(self) -> int:
        return int(self.sae.d_sae)

    @property
    def grid(self) -> tuple[int, int] | None:
        return tuple(self.layout.grid) if self.layout.grid is not None else None  # type: ignore[return-value]

    # --- images --------------------------------------------------------------------------------

    def eval_split(self) -> str:
        """The split effects are measured on: the dataset's validation split when it is not the store's, else the store's."""
        names = self.dataset.split_names()
        val = self.dataset.default_split("val")
        if val in names and val != self.store_split:
            return val
        warn(f"{self.dataset_spec} has no split besides '{self.store_split}': effects are measured on the images "
             "the SAE was trained on")  # fmt: skip
        return self.store_split

    def find_images(self, ids: list[str], split: str | None = None) -> np.ndarray:
        """Split indices of image ids of the store's split (a one-line error for an id it does not hold)."""
        split = split or self.store_split
        sp = self.split(split)
        if split not in self._ids:  # built once per split: a steering session looks ids up again and again
            self._ids[split] = {sp.image_id(i): i for i in range(len(sp))}
        known = self._ids[split]
        out = []
        for image_id in ids:
            if image_id not in known:
                example = sp.image_id(0) if len(sp) else "none"
                raise VisaeError(f"image '{image_id}' is not in split '{split}' of {self.dataset_spec}",
                                 f"pass an id of that split, e.g. '{example}' (the report lists each latent's top images)")  # fmt: skip
            out.append(known[image_id])
        return np.array(out, dtype=np.int64)

    def sample_indices(self, split: str, n: int, seed: int = 0) -> np.ndarray:
        """``n`` split indices drawn at random (all of them when the split is smaller), sorted."""
        size = len(self.split(split))
        if n >= size:
            return np.arange(size, dtype=np.int64)
        return np.sort(np.random.default_rng(seed).choice(size, n, replace=False)).astype(np.int64)

    def images(self, split: str, index_B: np.ndarray) -> ImageSet:
        """Pixels, labels, ids and cell parts of ``index_B`` of ``split``."""
        from visae.analysis.parts import cell_parts
        from visae.data.base import CorruptImage

        sp = self.split(split)
        pixels, labels, ids, parts = [], [], [], []
        for i in np.asarray(index_B, dtype=np.int64):
            try:
                s = sp[int(i)]
            except CorruptImage as e:
                raise VisaeError(f"image {e.image_id} cannot be read ({e.reason})", "pick other images") from None
            pixels.append(self.preprocess(s.image_HWC))
            labels.append(s.label)
            ids.append(s.image_id)
            if s.parts_HW is not None and self.grid is not None:
                parts.append(cell_parts(s.parts_HW, self.preprocess, *self.grid))
        if not pixels:
            raise VisaeError("no images to steer", "pass image ids, or a larger --n-images")
        return ImageSet(split, np.asarray(index_B, dtype=np.int64), ids, np.array(labels, dtype=np.int64),
                        torch.stack(pixels), np.stack(parts) if len(parts) == len(pixels) else None)  # fmt: skip

    # --- the model -----------------------------------------------------------------------------

    def splice(self, edit: Edit | None = None, directions: dict[int, torch.Tensor] | None = None) -> Splice:
        return Splice(self.backbone, self.sae, self.layer, edit, directions=directions)

    @torch.no_grad()
    def logits(self, pixels_BCHW: torch.Tensor, edit: Edit | None = None,
               directions: dict[int, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
        """The head's logits (float32, CPU) with ``edit`` spliced in (None: the clean model)."""
        out = []
        for a in range(0, len(pixels_BCHW), BATCH):
            x_BCHW = pixels_BCHW[a : a + BATCH]
            if edit is None or not edit.ops:
                raw = self.backbone.forward(x_BCHW)
            else:
                with self.splice(edit, directions):
                    raw = self.backbone.forward(x_BCHW)
            out.append(self.head.logits(raw).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def layer_tokens(self, pixels_BCHW: torch.Tensor) -> torch.Tensor:
        """``x_BND``: the layer's tokens (float32, CPU; CLS and registers first where the layer has them)."""
        from visae.steering.tokens import to_seq

        out = []
        for a in range(0, len(pixels_BCHW), BATCH):
            got = self.backbone.capture(pixels_BCHW[a : a + BATCH], [self.layer])[self.layer]
            out.append(to_seq(got, self.layout).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def patch_codes(self, x_BND: torch.Tensor) -> torch.Tensor:
        """``codes_BGS``: dense SAE codes of the patch tokens (float32, CPU)."""
        from visae.analysis.inputs import encode

        n_prefix = self.layout.n_prefix
        patches_BGD = x_BND[:, n_prefix:]
        B, G, D = patches_BGD.shape
        out = [encode(self.sae, patches_BGD[a : a + BATCH].reshape(-1, D).to(self.backbone.device)).float().cpu()
               for a in range(0, B, BATCH)]  # fmt: skip
        return torch.cat(out).reshape(B, G, -1)

    def max_act(self) -> np.ndarray:
        """``max_act_S``: each latent's largest activation over the store (the feature DB's), for edits in
        units of it. Without a feature DB, the largest over a sample of the store's tokens."""
        if self._max_act_S is None:
            self._max_act_S = self._db_max_act() if self.db is not None else self._sampled_max_act()
        return self._max_act_S

    def _db_max_act(self) -> np.ndarray:
        from visae.analysis.db import FeatureDB

        with FeatureDB(self.db) as db:  # type: ignore[arg-type]
            max_S = db.column("max_act").astype(np.float32)
        if len(max_S) != self.d_sae:
            raise VisaeError(f"the feature DB {self.db} has {len(max_S)} latents but the SAE has {self.d_sae}",
                             "rerun visae analyze --force on this run")  # fmt: skip
        return max_S

    def _sampled_max_act(self, n: int = 65_536) -> np.ndarray:
        from visae.analysis.inputs import encode
        from visae.store.reader import Store
        from visae.store.view import StoreView

        if self.info.store is None or not Path(self.info.store).is_dir():
            raise VisaeError("the run has no feature DB and its store cannot be found",
                             "run visae analyze --run RUN first (it records each latent's largest activation)")  # fmt: skip
        acts_TD = StoreView(Store(self.info.store)).sample(n, seed=0)
        max_S = np.zeros(self.d_sae, dtype=np.float32)
        for a in range(0, len(acts_TD), 8192):
            codes_TS = encode(self.sae, acts_TD[a : a + 8192].to(self.backbone.device)).float().cpu()
            max_S = np.maximum(max_S, codes_TS.amax(0).numpy())
        return max_S

    def check_latents(self, latents: list[int]) -> None:
        for i in latents:
            if not 0 <= i < self.d_sae:
                raise VisaeError(f"latent {i} is out of range: the SAE has {self.d_sae} latents", f"pick latents 0..{self.d_sae - 1}")
