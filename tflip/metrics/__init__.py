"""Evaluation metrics: exact Wasserstein-1 distance."""

from tflip.metrics.wasserstein import optimal_transport_plan, wasserstein1_exact  # noqa: F401
