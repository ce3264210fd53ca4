"""Sparse autoencoders: architectures behind one contract, fast kernels, trainer, files.

``create_sae(SAESpec(...))`` builds one; ``load_sae(path)`` reads a visae run, a SAELens
folder, a sparsify folder or a dictionary_learning ``ae.pt``; ``train(cfg)`` trains.
Names load on first use (``visae.sae.spec`` and ``train_config`` need no torch).
"""

from __future__ import annotations

from visae.registry import lazy_names

_WHERE = {
    "ARCHS": "visae.sae.base", "SAE": "visae.sae.base", "check_matches": "visae.sae.base", "create_sae": "visae.sae.base",
    "SAESpec": "visae.sae.spec", "Codes": "visae.sae.contract", "SAEOutput": "visae.sae.contract",
    "load_sae": "visae.sae.importers", "TensorSource": "visae.sae.source", "TokenSource": "visae.sae.source",
    "SAEHparams": "visae.sae.train_config", "TrainConfig": "visae.sae.train_config",
    "Run": "visae.sae.trainer", "train": "visae.sae.trainer",
}  # fmt: skip
__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
