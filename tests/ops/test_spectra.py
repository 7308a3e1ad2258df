"""Spectra, r(W) and spectral clamping against numpy's SVD."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.ops.spectra import rank_collapse, singular_values, spectral_clamp, top_singular_pairs, weight_matrix


def test_weight_matrix_shapes_and_singular_values(rng):
    conv = rng.normal(size=(3, 3, 4, 8)).astype("float32")
    matrix = weight_matrix(conv).numpy()
    assert matrix.shape == (8, 36)
    np.testing.assert_array_equal(matrix[5], conv[..., 5].reshape(-1))
    np.testing.assert_allclose(singular_values(matrix), np.linalg.svd(matrix, compute_uv=False), rtol=1e-5)
    dense = rng.normal(size=(5, 7)).astype("float16")
    np.testing.assert_allclose(singular_values(weight_matrix(dense)),
                               np.linalg.svd(dense.astype("float32"), compute_uv=False), rtol=1e-5)
    with pytest.raises(ValueError, match="`kernel`"):
        weight_matrix(np.zeros(3))


def test_rank_collapse_flat_rank_one_and_formula(rng):
    orthogonal = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    assert float(rank_collapse(singular_values(orthogonal))) == pytest.approx(1.0, abs=1e-5)
    rank_one = np.outer(rng.normal(size=10), rng.normal(size=6))
    assert float(rank_collapse(singular_values(rank_one))) == pytest.approx(1 / 6, abs=1e-5)
    values = np.array([4.0, 2.0, 1.0, 1.0])
    assert float(rank_collapse(values)) == pytest.approx(8.0 / 16.0)
    assert float(rank_collapse(np.zeros(4))) == 0.0
    batch = rank_collapse(np.stack([values, np.ones(4)]))
    np.testing.assert_allclose(batch, [0.5, 1.0])


def test_top_singular_pairs_match_svd(rng):
    matrix = rng.normal(size=(30, 20)).astype("float32")
    u, s, vt = np.linalg.svd(matrix)
    sigma, left, right = top_singular_pairs(matrix, rng.normal(size=(20, 2)), iterations=200)
    np.testing.assert_allclose(sigma, s[:2], rtol=1e-4)
    for i in range(2):
        assert abs(float(np.dot(left[:, i], u[:, i]))) == pytest.approx(1.0, abs=1e-3)
        assert abs(float(np.dot(right[:, i], vt[i]))) == pytest.approx(1.0, abs=1e-3)
    # Rayleigh-Ritz: even without iterations the estimates never exceed the true values.
    sigma0, _, _ = top_singular_pairs(matrix, rng.normal(size=(20, 2)), iterations=0)
    assert float(sigma0[0]) <= s[0] + 1e-4


@pytest.mark.parametrize("ratio", [1.0, 1.5, 3.0])
def test_clamp_bounds_the_ratio_on_random_gradients(rng, ratio):
    for _ in range(5):
        gradient = rng.normal(size=(24, 12)).astype("float32")
        gradient += 5.0 * np.outer(rng.normal(size=24), rng.normal(size=12)).astype("float32")  # dominant direction
        sigma, left, right = top_singular_pairs(gradient, rng.normal(size=(12, 2)), iterations=300)
        clamped, excess = spectral_clamp(tf.constant(gradient), ratio, sigma, left, right)
        s = np.linalg.svd(clamped.numpy(), compute_uv=False)
        original = np.linalg.svd(gradient, compute_uv=False)
        assert s[0] <= ratio * s[1] * (1 + 1e-4)
        assert float(excess) == pytest.approx(max(0.0, original[0] - ratio * original[1]), rel=1e-4)
        np.testing.assert_allclose(s[1:], original[1:], rtol=1e-3)  # the rest of the spectrum is untouched


def test_clamp_is_identity_when_the_ratio_already_holds(rng):
    q1 = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    q2 = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    gradient = (q1[:, :6] * np.array([2.0, 1.5, 1.0, 0.5, 0.2, 0.1])) @ q2.T
    sigma, left, right = top_singular_pairs(gradient.astype("float32"), rng.normal(size=(6, 2)), iterations=50)
    clamped, excess = spectral_clamp(tf.constant(gradient, tf.float32), 1.5, sigma, left, right)
    assert float(excess) == 0.0
    np.testing.assert_array_equal(clamped.numpy(), gradient.astype("float32"))
