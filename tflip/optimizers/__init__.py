"""Optimizer wrappers: gradient transformations applied before an inner Keras optimizer."""

from tflip.optimizers.spectral_clamp import SpectralGradientClamp  # noqa: F401
