"""Keras layers with a known, enforced Lipschitz constant."""

from tflip.layers.base import LipschitzLayer  # noqa: F401
