"""Evaluation metrics: exact Wasserstein-1 distance, Fréchet distance, certified robustness."""

from tflip.metrics.frechet import (  # noqa: F401
    FrechetDistance,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)
from tflip.metrics.robustness import (  # noqa: F401
    CertifiedAccuracy,
    certified_accuracy,
    certified_radius,
    pairwise_certified_accuracy,
    pairwise_certified_radius,
    prediction_margins,
)
from tflip.metrics.wasserstein import optimal_transport_plan, wasserstein1_exact  # noqa: F401
