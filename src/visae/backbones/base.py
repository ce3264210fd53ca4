"""One interface for every vision model: a spec string opens a ``Backbone``.

``load_backbone("hf:facebook/dinov2-small")``, ``load_backbone("timm:resnet50:/ckpt.pth")``,
``load_backbone("open_clip:ViT-B-32:openai")``, ``load_backbone("torchvision:resnet50")``.
Each scheme registers a loader in ``BACKBONES`` (see ``hf.py``, ``timm.py``, ...); the
loader builds the ``nn.Module``, its preprocessing and says how many CLS / register tokens
its sequences carry. Everything else (which modules can be hooked, their output shapes,
their token layouts, early-stopping capture) is shared and lives here and in ``layers.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from visae.backbones import layers as _layers
from visae.backbones.tokens import TokenLayout
from visae.backbones.weights import CheckpointMatch
from visae.data.transforms import Preprocess
from visae.errors import VisaeError
from visae.progress import warn
from visae.registry import Registry, split_spec


@dataclass(frozen=True)
class LayerInfo:
    """A hookable module: its dotted name, output shape (without batch) and token layout."""

    name: str
    shape: tuple[int, ...]
    layout: TokenLayout


def call_positional(model: torch.nn.Module, pixels_BCHW: torch.Tensor) -> Any:
    """Run a model that takes the pixel batch as its only positional argument (timm, torchvision)."""
    return model(pixels_BCHW)


@dataclass
class Backbone:
    """A vision model in eval mode, its preprocessing and what its token sequences hold."""

    spec: str
    """The spec string it was loaded from (``hf:...``, ``timm:...``)."""
    family: str
    """The loader scheme: hf, timm, open_clip, torchvision."""
    model: torch.nn.Module
    """The model (eval mode); layer names are its ``named_modules`` names."""
    preprocess: Preprocess
    """How an image becomes the model's input."""
    call: Callable[[torch.nn.Module, torch.Tensor], Any] = call_positional
    """How to run ``model`` on a normalised pixel batch."""
    n_cls: int | None = 0
    """CLS tokens at the start of the model's token sequences (None: infer from shapes)."""
    n_registers: int = 0
    """Register tokens after the CLS tokens."""
    patch_size: int | None = None
    """Side of a patch in pixels for ViTs (None: CNN, or infer the grid from shapes)."""
    class_names: list[str] | None = None
    """Names of the model's output classes where it is a classifier with known labels."""
    class_ids: list[str] | None = None
    """Dataset ids of those classes where known (ImageNet's WordNet ids, ``n01440764``...)."""
    checkpoint: CheckpointMatch | None = None
    """How the tensors of a checkpoint file in the spec were matched to the model's (None: no file)."""
    _traced: dict[int, dict[str, _layers.Traced]] = field(default_factory=dict, repr=False)

    @property
    def position_match(self) -> bool:
        """Whether some weights were matched by position (``allow_position_match``): unverified by their names."""
        return self.checkpoint is not None and self.checkpoint.how == "position"

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def forward(self, pixels_BCHW: torch.Tensor) -> Any:
        """The model's own output for a normalised pixel batch (no grad)."""
        with torch.no_grad():
            return self.call(self.model, pixels_BCHW.to(self.device))

    def layers(self) -> list[LayerInfo]:
        """Every hookable module in forward order, from one dummy forward at the input size."""
        return [LayerInfo(name, t.shape, t.layout) for name, t in self._trace().items() if t.hookable]

    def resolve_layer(self, name: str) -> str:
        """``name`` itself when it is a hookable module, else a did-you-mean error."""
        traced = self._trace()
        t = traced.get(name)
        if t is not None and t.hookable:
            return name
        hint = "(visae layers MODEL lists them)"
        if t is not None:
            raise VisaeError(f"layer '{name}' cannot be captured: {t.why_not()}", f"pick another layer {hint}")
        close = _layers.suggest(name, [n for n, t in traced.items() if t.hookable])
        raise VisaeError(f"unknown layer '{name}'", f"{close} {hint}" if close else f"visae layers {self.spec} lists them")

    def layout(self, layer: str) -> TokenLayout:
        """The token layout of ``layer``'s output, inferred from the model and its observed shape."""
        return self._trace()[self.resolve_layer(layer)].layout  # type: ignore[return-value]

    def capture(self, pixels_BCHW: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for a pixel batch; the forward stops after the last of them."""
        names = [self.resolve_layer(n) for n in layers]
        with torch.no_grad():
            return _layers.capture(self.model, lambda x: self.call(self.model, x), pixels_BCHW.to(self.device), names)

    def _trace(self) -> dict[str, _layers.Traced]:
        size = self.preprocess.size
        if size not in self._traced:
            dummy_BCHW = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                self._traced[size] = _layers.trace(
                    self.model,
                    lambda x: self.call(self.model, x),
                    dummy_BCHW.to(self.device),
                    prefix=None if self.n_cls is None else (self.n_cls, self.n_registers),
                    patch_grid=None if self.patch_size is None else (size // self.patch_size, size // self.patch_size),
                )
        return self._traced[size]


Loader = Callable[..., Backbone]
"""``loader(rest_of_spec, *, random_init: bool, allow_position_match: bool) -> Backbone`` (on CPU;
``load_backbone`` moves it)."""

BACKBONES: Registry[Loader] = Registry("backbone scheme")

EXAMPLES = "hf:facebook/dinov2-small, timm:resnet50, open_clip:ViT-B-32:openai, torchvision:resnet50"


def load_backbone(
    spec: str,
    *,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    preprocess_overrides: dict[str, Any] | None = None,
    allow_position_match: bool = False,
) -> Backbone:
    """Open a vision model from its spec string, in eval mode on ``device`` (auto, cpu, cuda[:N]).

    ``random_init`` builds the architecture with random weights on purpose (for tests and
    smoke runs); ``preprocess_overrides`` replaces fields of the model's own preprocessing
    (``{"size": 256}``). ``allow_position_match`` loads a checkpoint whose tensor names differ from
    the model's by position (refused otherwise, see ``weights.py``), with a loud warning: check the
    result with ``visae.backbones.check.check_weights`` (``visae extract`` does, on its labelled images).
    """
    from visae.backbones import hf, open_clip, timm, torchvision  # noqa: F401  (register the schemes)
    from visae.device import resolve_device

    device = resolve_device(str(device))  # before loading: a missing GPU is a one-line error, not a slow one
    scheme, rest = split_spec(spec)
    if not rest:
        guess = f"write hf:{spec}? " if "/" in spec else ""
        raise VisaeError(f"backbone spec '{spec}' has no scheme", f"{guess}specs look like {EXAMPLES}")
    backbone = BACKBONES.get(scheme)(rest, random_init=random_init, allow_position_match=allow_position_match)
    backbone.spec = spec
    if backbone.position_match:
        warn_position_match(backbone)
    backbone.model.eval()
    try:
        backbone.model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise VisaeError(f"cannot move the model to device '{device}' ({e})", "use --device cpu") from None
    if preprocess_overrides:
        backbone.preprocess = override_preprocess(backbone.preprocess, preprocess_overrides)
    return backbone


def warn_position_match(backbone: Backbone) -> None:
    """The loud note of a position match, before any check has run."""
    m = backbone.checkpoint
    assert m is not None
    fits = f"; {m.fits} takes them by name" if m.fits else ""
    warn(f"{backbone.spec.removesuffix(':' + m.checkpoint)}: loaded {m.n_by_position} of {m.n_tensors} tensors of "
         f"{Path(m.checkpoint).name} BY POSITION (names differ{fits}); the weights are unverified until checked on labelled images")


def override_preprocess(pp: Preprocess, overrides: dict[str, Any]) -> Preprocess:
    """``pp`` with some fields replaced, validated."""
    unknown = set(overrides) - set(Preprocess.model_fields)
    if unknown:
        raise VisaeError(
            f"unknown preprocessing field(s) {', '.join(sorted(unknown))}",
            f"known fields: {', '.join(Preprocess.model_fields)}",
        )
    try:
        return Preprocess(**{**pp.model_dump(), **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        raise VisaeError(f"bad preprocessing value for '{err['loc'][0]}': {err['msg']}", "fix that value or leave it out") from None


def describe_layout(layout: TokenLayout) -> str:
    """A short human description: 'spatial 14x14 (channels-last)', 'CLS + 4 reg + 16x16 patches'."""
    grid = f"{layout.grid[0]}x{layout.grid[1]}" if layout.grid else ""
    if layout.kind == "pooled":
        return "pooled vector"
    if layout.kind == "spatial":
        return f"map {grid}" + (" (channels-last)" if layout.channels_last else "")
    if layout.grid is None:
        return "sequence (not a patch grid)"
    parts = (["CLS"] if layout.n_cls == 1 else [f"{layout.n_cls} CLS"] if layout.n_cls else []) + (
        [f"{layout.n_registers} reg"] if layout.n_registers else []
    )
    return " + ".join(parts + [f"{grid} patches"])
