from torchvision._standin import InterpolationMode, unavailable
from torchvision.transforms import functional  # noqa: F401

_NAMES = [
    "CenterCrop", "ColorJitter", "Compose", "GaussianBlur", "Grayscale", "Normalize", "RandomApply",
    "RandomGrayscale", "RandomHorizontalFlip", "RandomResizedCrop", "RandomVerticalFlip",
    "Resize", "ToTensor",
]
for _name in _NAMES:
    globals()[_name] = unavailable(f"torchvision.transforms.{_name}")
__all__ = ["InterpolationMode", *_NAMES]
