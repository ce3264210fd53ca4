from torchvision._standin import unavailable

FrozenBatchNorm2d = unavailable("torchvision.ops.misc.FrozenBatchNorm2d")
