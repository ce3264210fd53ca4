"""visae: sparse autoencoders for vision models — find, test and measure their features."""

__version__ = "0.1.0"
