"""Keras callbacks for Lipschitz and Wasserstein training."""

from tflip.callbacks.wasserstein import ExactWasserstein  # noqa: F401
