"""Fréchet distance against scipy's sqrtm, closed forms, and a Keras feature model."""

import keras
import numpy as np
import pytest
import scipy.linalg

from tflip.metrics import FrechetDistance, feature_statistics, frechet_distance, frechet_distance_from_features


def random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)  # eigenvalues >= 0.5: well conditioned


def sqrtm_reference(mu1, sigma1, mu2, sigma2):
    """The textbook formula with the non-symmetric square root of the product."""
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root).real


def test_matches_scipy_sqrtm(rng):
    for d in (1, 3, 8):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        sigma1, sigma2 = random_covariance(rng, d), random_covariance(rng, d)
        expected = sqrtm_reference(mu1, sigma1, mu2, sigma2)
        assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_commuting_diagonal_closed_form(rng):
    # Diagonal covariances commute: (S1 S2)^(1/2) = diag(sqrt(a b)) and the trace term is sum (sqrt a - sqrt b)^2.
    a, b = rng.uniform(0.1, 3.0, size=5), rng.uniform(0.1, 3.0, size=5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_identical_is_zero_and_symmetric(rng):
    mu, sigma = rng.normal(size=6), random_covariance(rng, 6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-12 * np.trace(sigma))
    mu2, sigma2 = rng.normal(size=6), random_covariance(rng, 6)
    assert frechet_distance(mu, sigma, mu2, sigma2) == pytest.approx(
        frechet_distance(mu2, sigma2, mu, sigma), rel=1e-12
    )


def test_singular_covariances_closed_form(rng):
    # Rank one: S1 S2 = a (a.b) b^T has the single eigenvalue (a.b)^2, so Tr (S1 S2)^(1/2) = |a.b|.
    a, b = rng.normal(size=4), rng.normal(size=4)
    expected = a @ a + b @ b - 2 * abs(a @ b)
    zero = np.zeros(4)
    assert frechet_distance(zero, np.outer(a, a), zero, np.outer(b, b)) == pytest.approx(expected, rel=1e-9)
    # Fewer samples than dimensions: rank-deficient empirical covariances, still finite and >= 0, and the
    # symmetric computation agrees with sqrtm where both apply (here S1 is full rank, S2 is not).
    f1, f2 = rng.normal(size=(50, 10)), rng.normal(size=(6, 10)) + 0.3
    mu1, sigma1 = feature_statistics(f1)
    mu2, sigma2 = feature_statistics(f2)
    assert np.linalg.matrix_rank(sigma2) == 5
    distance = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert distance == pytest.approx(sqrtm_reference(mu1, sigma1, mu2, sigma2), rel=1e-6)
    assert frechet_distance(mu2, sigma2, mu2, sigma2) == pytest.approx(0.0, abs=1e-12 * np.trace(sigma2))


def test_feature_statistics_and_from_features(rng):
    features = rng.normal(size=(40, 2, 3))
    mu, sigma = feature_statistics(features)
    flat = features.reshape(40, 6)
    np.testing.assert_allclose(mu, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(flat, rowvar=False), rtol=1e-10)
    other = rng.normal(size=(30, 6)) * 2.0 + 1.0
    expected = sqrtm_reference(flat.mean(0), np.cov(flat, rowvar=False), other.mean(0), np.cov(other, rowvar=False))
    assert frechet_distance_from_features(features, other) == pytest.approx(expected, rel=1e-9)


def test_keras_feature_model_batched(rng):
    # A linear feature map with known weights: the distance equals the one on the features computed by hand.
    kernel, bias = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=3).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.layers[0].kernel.assign(kernel)
    model.layers[0].bias.assign(bias)
    x1 = rng.normal(size=(100, 5)).astype("float32")
    x2 = (rng.normal(size=(70, 5)) + 0.5).astype("float32")
    expected = frechet_distance_from_features(x1 @ kernel + bias, x2 @ kernel + bias)
    fid = FrechetDistance(model, batch_size=16)  # uneven final batches exercise the statistics merge
    assert fid(x1, x2) == pytest.approx(expected, rel=1e-5)
    mu, sigma = fid.statistics(x1)
    reference_mu, reference_sigma = feature_statistics(np.asarray(model(x1)))
    np.testing.assert_allclose(mu, reference_mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sigma, reference_sigma, rtol=1e-9, atol=1e-12)
    assert fid((mu, sigma), x2) == pytest.approx(fid(x1, x2), rel=1e-12)


def test_bad_arguments(rng):
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="`mu1`"):
        frechet_distance(np.zeros((3, 1)), sigma, mu, sigma)
    with pytest.raises(ValueError, match="`mu1`"):
        frechet_distance([0.0, np.nan, 0.0], sigma, mu, sigma)
    with pytest.raises(ValueError, match="`mu1` and `mu2`"):
        frechet_distance(np.zeros(2), sigma, mu, sigma)
    with pytest.raises(ValueError, match="`sigma1`"):
        frechet_distance(mu, np.eye(2), mu, sigma)
    with pytest.raises(ValueError, match="`sigma2`"):
        frechet_distance(mu, sigma, mu, np.triu(np.ones((3, 3))))  # not symmetric
    with pytest.raises(ValueError, match="`sigma2`"):
        frechet_distance(mu, sigma, mu, -np.eye(3))  # not PSD
    with pytest.raises(ValueError, match="`sigma1`"):
        frechet_distance(mu, np.full((3, 3), np.inf), mu, sigma)
    with pytest.raises(ValueError, match="`features`"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="`features`"):
        feature_statistics(np.zeros(5))
    with pytest.raises(ValueError, match="`features`"):
        feature_statistics(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="`features1` and `features2`"):
        frechet_distance_from_features(np.zeros((4, 2)), np.zeros((4, 3)))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="`batch_size`"):
        FrechetDistance(model, batch_size=0)
    with pytest.raises(ValueError, match="`feature_model`"):
        FrechetDistance("inception")
    with pytest.raises(ValueError, match="`samples`"):
        FrechetDistance(model).statistics(np.zeros((1, 2), "float32"))
