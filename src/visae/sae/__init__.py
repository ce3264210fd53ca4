"""Sparse autoencoders: architectures behind one contract, fast kernels, trainer, files.

``create_sae(SAESpec(...))`` builds one; ``load_sae(path)`` reads a visae run, a SAELens
folder, a sparsify folder or a dictionary_learning ``ae.pt``; ``train(cfg)`` trains.
"""

from visae.sae.base import ARCHS, SAE, SAESpec, check_matches, create_sae
from visae.sae.contract import Codes, SAEOutput

# Each import registers its architecture in ARCHS.
from visae.sae import relu as _relu  # noqa: F401,E402
from visae.sae import topk as _topk  # noqa: F401,E402
from visae.sae import batchtopk as _batchtopk  # noqa: F401,E402
from visae.sae import jumprelu as _jumprelu  # noqa: F401,E402
from visae.sae import matryoshka as _matryoshka  # noqa: F401,E402

from visae.sae.importers import load_sae  # noqa: E402
from visae.sae.source import TensorSource, TokenSource  # noqa: E402
from visae.sae.train_config import SAEHparams, TrainConfig  # noqa: E402
from visae.sae.trainer import Run, train  # noqa: E402

__all__ = [
    "ARCHS", "SAE", "SAESpec", "Codes", "SAEOutput", "check_matches", "create_sae", "load_sae",
    "TensorSource", "TokenSource", "SAEHparams", "TrainConfig", "Run", "train",
]  # fmt: skip
