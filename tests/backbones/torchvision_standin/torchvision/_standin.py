"""Placeholder classes: importable, refuse to be used (tests-only torchvision stand-in)."""

from enum import Enum


def unavailable(qualname: str) -> type:
    """A class named ``qualname`` that raises on instantiation."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{qualname} is not available in visae's tests-only torchvision stand-in")

    return type(qualname.rsplit(".", 1)[-1], (), {"__init__": __init__, "__module__": qualname.rsplit(".", 1)[0]})


class InterpolationMode(Enum):
    """Same members and values as torchvision.transforms.InterpolationMode."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"
