"""Fréchet distance between Gaussians fitted to features (the math of FID).

For `N(mu1, S1)` and `N(mu2, S2)` the squared 2-Wasserstein distance is

    ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

(Dowson and Landau 1982); the Fréchet Inception Distance (Heusel et al. 2017)
evaluates it on Inception features of real and generated images. `S1 S2` is
not symmetric, and the usual `scipy.linalg.sqrtm(S1 @ S2)` can return complex
values or fail for the rank-deficient covariances that fewer samples than
feature dimensions produce. Here the trace term is computed from symmetric
matrices only: with `R = S1^(1/2)` the PSD square root, `S1 S2 = R (R S2 R) R^-1`
is similar to the PSD matrix `R S2 R`, so (for singular `S1` as well, by
continuity) `Tr (S1 S2)^(1/2) = sum_i sqrt(lambda_i(R S2 R))`. Both
eigendecompositions are symmetric (`eigh`), and the eigenvalues that rounding
leaves around the zero eigenvalues of a singular PSD matrix (tiny, of either
sign) are set to 0 before taking square roots.

Everything runs in float64 NumPy: the distance is a difference of traces of
size `~ d * variance`, which float32 would cancel to noise.
"""

import numpy as np

from tflip import _validation


def _vector(name, value):
    value = np.asarray(value, dtype=np.float64)
    if value.ndim != 1 or value.size == 0 or not np.all(np.isfinite(value)):
        raise ValueError(f"`{name}` must be a non-empty finite vector, got shape {value.shape}.")
    return value


def _covariance(name, value, dimension):
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (dimension, dimension) or not np.all(np.isfinite(value)):
        raise ValueError(f"`{name}` must be a finite ({dimension}, {dimension}) matrix, got shape {value.shape}.")
    scale = max(np.max(np.abs(value)), np.finfo(np.float64).tiny)
    # Catches a mean or a data matrix passed by mistake; covariances from np.cov are symmetric to rounding.
    if np.max(np.abs(value - value.T)) > 1e-6 * scale:
        raise ValueError(f"`{name}` must be symmetric.")
    value = 0.5 * (value + value.T)
    eigenvalues, eigenvectors = np.linalg.eigh(value)
    if eigenvalues[0] < -1e-6 * max(eigenvalues[-1], scale):
        raise ValueError(f"`{name}` must be positive semi-definite, its smallest eigenvalue is {eigenvalues[0]:.3g}.")
    return value, eigenvalues, eigenvectors


def _clean_eigenvalues(eigenvalues):
    """Eigenvalues of a PSD matrix with those below rounding level set to exactly 0.

    `eigh` returns the zero eigenvalues of a singular matrix as noise of size
    ~ d * eps * lambda_max, whose square roots (~1e-8 relative) would dominate
    the error of the trace term: they are indistinguishable from 0, so they are 0.
    """
    cutoff = eigenvalues.size * np.finfo(np.float64).eps * max(eigenvalues[-1], 0.0)
    return np.where(eigenvalues > cutoff, eigenvalues, 0.0)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance `||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))` between two Gaussians.

    This is the squared 2-Wasserstein distance (what FID reports, without a
    square root). The trace of the matrix square root is computed from the
    eigenvalues of the PSD matrix `S1^(1/2) S2 S1^(1/2)` (see the module
    docstring), which is exact for singular covariances too.

    Args:
        mu1: Mean `(d,)` of the first Gaussian.
        sigma1: Covariance `(d, d)` of the first Gaussian (symmetric PSD).
        mu2: Mean `(d,)` of the second Gaussian.
        sigma2: Covariance `(d, d)` of the second Gaussian (symmetric PSD).

    Returns:
        A non-negative Python float.

    Raises:
        ValueError: For mismatched shapes, non-finite values, or covariances
            that are not symmetric positive semi-definite (to 1e-6 relative).

    Example:
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))  # 2 + (1 + 4 - 2*2) * 2
        4.0
    """
    mu1 = _vector("mu1", mu1)
    mu2 = _vector("mu2", mu2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"`mu1` and `mu2` must have the same shape, got {mu1.shape} and {mu2.shape}.")
    sigma1, eigenvalues1, eigenvectors1 = _covariance("sigma1", sigma1, mu1.size)
    sigma2, _, _ = _covariance("sigma2", sigma2, mu1.size)
    # Symmetric PSD square root of S1, then the PSD matrix S1^(1/2) S2 S1^(1/2), symmetrized against rounding.
    root1 = (eigenvectors1 * np.sqrt(_clean_eigenvalues(eigenvalues1))) @ eigenvectors1.T
    middle = root1 @ sigma2 @ root1
    trace_root = np.sum(np.sqrt(_clean_eigenvalues(np.linalg.eigvalsh(0.5 * (middle + middle.T)))))
    distance = np.sum(np.square(mu1 - mu2)) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root
    # The exact value is >= 0 (a squared distance); rounding may leave a tiny negative number.
    return float(max(distance, 0.0))


def feature_statistics(features):
    """Mean and (unbiased, `n - 1`) covariance of a batch of feature vectors.

    Args:
        features: Array `(n, ...)` with `n >= 2`, flattened per sample.

    Returns:
        `(mu, sigma)`: float64 arrays `(d,)` and `(d, d)`.

    Raises:
        ValueError: For fewer than two samples or non-finite values.

    Example:
        >>> mu, sigma = feature_statistics(np.random.normal(size=(500, 8)))
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim < 2 or features.shape[0] < 2:
        raise ValueError(f"`features` must hold at least 2 samples (n, ...), got shape {features.shape}.")
    features = features.reshape(features.shape[0], -1)
    if not np.all(np.isfinite(features)):
        raise ValueError("`features` must be finite.")
    mu = features.mean(axis=0)
    centered = features - mu  # two-pass: no cancellation from E[x x^T] - mu mu^T
    return mu, centered.T @ centered / (features.shape[0] - 1)


def frechet_distance_from_features(features1, features2):
    """Fréchet distance between Gaussians fitted to two feature batches.

    Args:
        features1: Array `(n1, ...)`, `n1 >= 2`.
        features2: Array `(n2, ...)` with the same per-sample size.

    Returns:
        A non-negative Python float.

    Example:
        >>> frechet_distance_from_features(real_features, fake_features)
    """
    mu1, sigma1 = feature_statistics(features1)
    mu2, sigma2 = feature_statistics(features2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"`features1` and `features2` must have the same feature size, got {mu1.size} and {mu2.size}.")
    return frechet_distance(mu1, sigma1, mu2, sigma2)


class FrechetDistance:
    """Fréchet distance between two sample sets in the feature space of a Keras model.

    With an Inception-v3 pooling model as `feature_model` this is FID; any
    feature extractor works (for instance a classifier's penultimate layer on
    MNIST). Features are extracted in batches and their mean and covariance
    accumulated in float64 with Chan et al.'s pairwise update, so the samples
    never need to fit in memory as features.

    Args:
        feature_model: Callable Keras model mapping a batch of samples to
            features `(batch, ...)` (flattened per sample).
        batch_size: Samples per forward pass, an integer >= 1.

    Example:
        >>> fid = FrechetDistance(keras.applications.InceptionV3(include_top=False, pooling="avg"))
        >>> fid(real_images, generated_images)
        >>> reference = fid.statistics(real_images)  # reuse across evaluations
        >>> fid(reference, generated_images)
    """

    def __init__(self, feature_model, batch_size=256):
        if not callable(feature_model):
            raise ValueError(f"`feature_model` must be a callable Keras model, got {feature_model!r}.")
        self.feature_model = feature_model
        self.batch_size = _validation.positive_int("batch_size", batch_size)

    def statistics(self, samples):
        """Mean `(d,)` and unbiased covariance `(d, d)` of the features of `samples` (`n >= 2`)."""
        count = len(samples)
        if count < 2:
            raise ValueError(f"`samples` must hold at least 2 samples, got {count}.")
        n, mu, scatter = 0, None, None
        for begin in range(0, count, self.batch_size):
            batch = np.asarray(self.feature_model(samples[begin : begin + self.batch_size], training=False))
            batch = batch.astype(np.float64).reshape(batch.shape[0], -1)
            batch_mu = batch.mean(axis=0)
            centered = batch - batch_mu
            batch_scatter = centered.T @ centered
            m = batch.shape[0]
            if mu is None:
                n, mu, scatter = m, batch_mu, batch_scatter
                continue
            # Chan et al. (1979): merge two (count, mean, centered scatter) summaries exactly.
            delta = batch_mu - mu
            total = n + m
            mu = mu + delta * (m / total)
            scatter = scatter + batch_scatter + np.outer(delta, delta) * (n * m / total)
            n = total
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(scatter))):
            raise ValueError("`feature_model` produced non-finite features.")
        return mu, scatter / (n - 1)

    def __call__(self, samples1, samples2):
        """Fréchet distance between the feature Gaussians of two sample sets.

        Args:
            samples1: Array `(n1, ...)` of model inputs, or precomputed
                statistics `(mu, sigma)` from `statistics`.
            samples2: The same for the second set.

        Returns:
            A non-negative Python float.
        """
        stats1 = samples1 if isinstance(samples1, tuple) else self.statistics(samples1)
        stats2 = samples2 if isinstance(samples2, tuple) else self.statistics(samples2)
        return frechet_distance(stats1[0], stats1[1], stats2[0], stats2[1])
