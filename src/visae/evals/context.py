"""One SAE run opened for evaluation: the SAE, the held-out tokens, the baselines, and (lazily) the model.

Each metric family is a function ``evaluate(ctx) -> dict`` (JSON-ready) over an ``EvalContext``; codes are
computed once per encoder and cached, so the families share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.evals.data import EvalSet
from visae.evals.encoders import Encoder, kmeans_encoder, pca_encoder, raw_encoder, sae_encoder

BASELINES = ("random_sae", "raw", "pca", "kmeans")
MAX_CODES = 32_000_000
"""Without --max-images, the held-out images are capped so that tokens x latents stays below this (dense float32
codes of each encoder are held at once: 128 MB each)."""
"""Baselines scored next to the SAE (docs/metrics.md)."""


@dataclass
class EvalContext:
    run: Any
    """``visae.analysis.inputs.RunInfo`` of the evaluated SAE."""
    sae: Any
    """The saved SAE (takes raw activations)."""
    heldout: EvalSet
    """Held-out tokens: never trained on."""
    how: str
    """Which images the held-out set is, in words."""
    train_store: Any = None
    """The store the SAE was trained on (baselines are fitted on a sample of it), when it can be opened."""
    device: str = "cpu"
    seed: int = 0
    fit_tokens: int = 65_536
    """Training tokens the PCA and k-means baselines are fitted on."""
    options: dict[str, Any] = field(default_factory=dict)
    """Family options from the config (ood split, second run, ...)."""
    _codes: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _encoders: dict[str, Encoder] = field(default_factory=dict, repr=False)
    _steerer: Any = field(default=None, repr=False)
    _fit_sample: torch.Tensor | None = field(default=None, repr=False)
    _random_sae: Any = field(default=None, repr=False)

    def encoder(self, name: str = "sae") -> Encoder:
        """The SAE (``sae``) or a baseline (``random_sae``, ``raw``, ``pca``, ``kmeans``), built on first use."""
        if name not in self._encoders:
            self._encoders[name] = self._build(name)
        return self._encoders[name]

    def codes(self, name: str = "sae") -> torch.Tensor:
        """``codes_TS`` of the held-out tokens under encoder ``name`` (cached)."""
        if name not in self._codes:
            self._codes[name] = self.encoder(name).encode(self.heldout.acts_TD)
        return self._codes[name]

    def fit_sample(self) -> torch.Tensor:
        """A seeded sample of training tokens for fitting baselines. Only when the run's training store cannot be found
        are held-out tokens used instead, and ``how`` (written with every result) says so."""
        if self._fit_sample is None:
            from visae.store.view import StoreView

            if self.train_store is None:
                self.how += "; the training store cannot be found, so the baselines were fitted on these held-out tokens"
                self._fit_sample = self.heldout.acts_TD[torch.randperm(len(self.heldout.acts_TD), generator=torch.Generator().manual_seed(self.seed))[: self.fit_tokens]]
            else:
                self._fit_sample = StoreView(self.train_store).sample(self.fit_tokens, seed=self.seed)
        return self._fit_sample

    def random_sae(self) -> Any:
        """The random-init SAE of the evaluated one's spec, its run's normalisation folded in as the trainer folds it,
        on the SAE's device (built once); or why there is none."""
        if self._random_sae is None:
            from visae.analysis.baselines import random_sae, run_normalisation

            default_scale = float(self.train_store.scale) if self.train_store is not None else 1.0
            mean_D, scale = run_normalisation(self.run.normalization, self.fit_sample().double().mean(0).float(), default_scale)
            rand = random_sae(self.sae, mean_D, scale, self.seed)
            self._random_sae = rand if isinstance(rand, str) else rand.to(next(self.sae.parameters()).device)
        return self._random_sae

    def _build(self, name: str) -> Encoder:
        if name == "sae":
            return sae_encoder(self.sae)
        if name == "random_sae":
            rand = self.random_sae()
            if isinstance(rand, str):
                raise ValueError(rand)
            return sae_encoder(rand, "random_sae", "latents of a random-init SAE")
        if name == "raw":
            return raw_encoder(self.fit_sample().double().mean(0).float())
        if name == "pca":
            return pca_encoder(self.fit_sample())
        if name == "kmeans":
            return kmeans_encoder(self.fit_sample(), int(self.sae.d_sae), seed=self.seed)
        raise KeyError(name)

    def steerer(self) -> Any:
        """The backbone with the SAE, for metrics that run the model (fidelity, OOD)."""
        if self._steerer is None:
            from visae.steering.session import Steerer

            self._steerer = Steerer.open(self.run.path, device=self.device)
        return self._steerer

    @property
    def run_dir(self) -> Path:
        return Path(self.run.path)


def open_context(run: str | Path, store: str | Path | None = None, *, max_images: int | None = None, device: str = "cpu",
                 seed: int = 0, options: dict[str, Any] | None = None) -> EvalContext:  # fmt: skip
    """An ``EvalContext`` of ``run`` on ``store`` (a held-out store), or on the images the run's trainer kept
    out of its training store when ``store`` is None."""
    from visae.analysis.inputs import open_sae, read_run
    from visae.errors import VisaeError
    from visae.evals.data import heldout_rows, load_eval_set
    from visae.store.reader import Store

    info = read_run(run)
    train_store = Store(info.store) if info.store is not None and Path(info.store).is_dir() else None
    if store is None and train_store is None:
        raise VisaeError(f"the run's training store {info.store} cannot be found", "pass --store HELD_OUT (a store of held-out images)")
    target = Store(store) if store is not None else train_store
    from visae.device import resolve_device

    device = str(resolve_device(device))
    sae = open_sae(info.sae_dir).to(device)
    if int(target.d) != int(sae.d_in):
        raise VisaeError(f"the SAE takes {sae.d_in}-d activations but {target.path} holds {target.d}-d tokens",
                         "pass a store extracted with the run's model and layer")  # fmt: skip
    if info.layer and str(target.meta.layer) != info.layer:
        raise VisaeError(f"the run reads layer '{info.layer}' but {target.path} holds '{target.meta.layer}'",
                         "pass a store extracted with the run's model and layer")  # fmt: skip
    if max_images is None:  # dense codes of every encoder are held at once: cap the images by their size
        per_image = max(1, int(np.median(target.images["n_tokens"])) if len(target.images["n_tokens"]) else 1)
        max_images = max(2, MAX_CODES // (per_image * int(sae.d_sae)))
    rows, how = heldout_rows(target, Path(info.path), max_images, seed)  # the training store itself: its held-out images only
    heldout = load_eval_set(target, rows)
    return EvalContext(info, sae, heldout, how, train_store, device, seed, options=dict(options or {}))
