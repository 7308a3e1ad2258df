"""Gram-iteration bounds, Björck orthonormalization and power iteration against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.ops.bjorck import bjorck_coefficients, bjorck_orthonormalize, orthonormality_error
from tflip.ops.gram import gram_iteration_bound
from tflip.ops.power_iteration import matrix_operators, operator_norm_to_tolerance, power_iteration, rayleigh_norm


@pytest.mark.parametrize("shape", [(5, 7, 9), (3, 9, 4), (2, 6, 6)])
def test_gram_bound_is_upper_and_converges(rng, shape):
    matrices = rng.normal(size=shape)
    exact = np.linalg.norm(matrices, 2, axis=(1, 2))
    for iterations in (1, 2, 4):
        assert np.all(gram_iteration_bound(matrices, iterations).numpy() >= exact * (1 - 1e-12))
    np.testing.assert_allclose(gram_iteration_bound(matrices, 8), exact, rtol=1e-9)


def test_gram_bound_complex_and_zero(rng):
    blocks = rng.normal(size=(4, 3, 5)) + 1j * rng.normal(size=(4, 3, 5))
    np.testing.assert_allclose(gram_iteration_bound(blocks, 8), np.linalg.norm(blocks, 2, axis=(1, 2)), rtol=1e-9)
    assert float(gram_iteration_bound(np.zeros((1, 3, 3)), 3)[0]) == 0.0


def test_gram_bound_bad_iterations():
    with pytest.raises(ValueError, match="iterations"):
        gram_iteration_bound(np.eye(2), 0)


def test_bjorck_coefficients_are_taylor_of_inverse_sqrt():
    assert bjorck_coefficients(3) == [1.0, 0.5, 0.375, 0.3125]


@pytest.mark.parametrize("shape", [(40, 20), (20, 20), (10, 30)])
@pytest.mark.parametrize("order", [1, 2])
def test_bjorck_converges_to_polar_factor(rng, shape, order):
    matrix = rng.normal(size=shape)
    result = bjorck_orthonormalize(tf.constant(matrix), iterations=30, order=order).numpy()
    u, _, vt = np.linalg.svd(matrix, full_matrices=False)
    np.testing.assert_allclose(result, u @ vt, atol=1e-8)


def test_bjorck_is_differentiable(rng):
    matrix = tf.Variable(rng.normal(size=(6, 4)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(bjorck_orthonormalize(matrix, 10) * rng.normal(size=(6, 4)))
    grad = tape.gradient(loss, matrix)
    assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)


def test_orthonormality_error(rng):
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert float(orthonormality_error(q)) < 1e-5
    assert float(orthonormality_error(2 * q)) == pytest.approx(1.0, abs=1e-5)


def test_power_iteration_converges_to_top_singular_value(rng):
    matrix = rng.normal(size=(8, 5))
    apply, adjoint = matrix_operators(tf.constant(matrix))
    u = power_iteration(apply, adjoint, tf.constant(rng.normal(size=(1, 8))), 200)
    assert float(rayleigh_norm(apply, u)) == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-8)
    norm, _ = operator_norm_to_tolerance(apply, adjoint, tf.constant(rng.normal(size=(1, 8))), 1e-12)
    assert float(norm) == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-6)


def test_power_iteration_estimate_is_a_lower_bound(rng):
    matrix = rng.normal(size=(8, 8))
    apply, adjoint = matrix_operators(tf.constant(matrix))
    for steps in range(4):
        u = power_iteration(apply, adjoint, tf.constant(rng.normal(size=(1, 8))), steps)
        assert float(rayleigh_norm(apply, u)) <= np.linalg.norm(matrix, 2) * (1 + 1e-12)
