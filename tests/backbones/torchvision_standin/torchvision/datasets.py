from torchvision._standin import unavailable

_NAMES = ["CIFAR10", "CIFAR100", "MNIST", "KMNIST", "FashionMNIST", "ImageFolder"]
for _name in _NAMES:
    globals()[_name] = unavailable(f"torchvision.datasets.{_name}")
__all__ = _NAMES
