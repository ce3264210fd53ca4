"""Vision backbones: spec string -> model + preprocessing; hookable layers; token layouts.

>>> bb = load_backbone("hf:facebook/dinov2-small")
>>> bb.layers()                                  # hookable modules, shapes, layouts
>>> out = bb.capture(pixels_BCHW, ["encoder.layer.8"])["encoder.layer.8"]
>>> tokens_TD, index = to_tokens(out, bb.layout("encoder.layer.8"), select="patch")
"""

from visae.backbones.base import BACKBONES, Backbone, LayerInfo, load_backbone
from visae.backbones.tokens import TOKEN_KINDS, TokenIndex, TokenLayout, to_tokens, tokens_per_image

__all__ = [
    "BACKBONES",
    "Backbone",
    "LayerInfo",
    "TOKEN_KINDS",
    "TokenIndex",
    "TokenLayout",
    "load_backbone",
    "to_tokens",
    "tokens_per_image",
]
