from torchvision._standin import InterpolationMode  # noqa: F401
