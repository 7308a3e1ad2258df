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


# --- Polar Express (optimal cubic schedule) training path -------------------------------------

from tflip.ops.bjorck import polar_express_coefficients, polar_express_orthonormalize  # noqa: E402


def numpy_polar(matrix):
    u, _, vt = np.linalg.svd(matrix, full_matrices=False)
    return u @ vt


def numpy_polar_derivative(matrix, direction):
    """Exact derivative of the polar factor U V^T at `matrix` along `direction` (from the SVD)."""
    if matrix.shape[0] < matrix.shape[1]:
        return numpy_polar_derivative(matrix.T, direction.T).T
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    inner = u.T @ direction @ vt.T
    core = (inner - inner.T) / (s[:, None] + s[None, :])
    orthogonal_part = direction - u @ (u.T @ direction)
    return u @ core @ vt + orthogonal_part @ vt.T @ np.diag(1 / s) @ vt


def test_polar_express_coefficients_equioscillate_and_bound_the_error():
    for lower in (0.05, 0.35, 0.9):
        coefficients, error = polar_express_coefficients(lower, 3)
        x = np.linspace(lower, 1.0, 20001)
        first = coefficients[0][0] * x + coefficients[0][1] * x**3
        # Minimax: equal deviation at both ends and at the interior maximum.
        np.testing.assert_allclose([first[0], first[-1]], 1 - (first.max() - 1), rtol=1e-6)
        for a, b in coefficients[1:]:
            first = a * first + b * first**3
        assert np.abs(first - 1).max() <= error * (1 + 1e-9)
    # A tight interval gives the Björck / Newton-Schulz step.
    np.testing.assert_allclose(polar_express_coefficients(1.0, 1)[0][0], (1.5, -0.5))
    with pytest.raises(ValueError, match="lower"):
        polar_express_coefficients(0.0, 3)


@pytest.mark.parametrize("shape", [(40, 20), (20, 20), (10, 30)])
def test_polar_express_converges_to_numpy_polar_factor(rng, shape):
    matrix = rng.normal(size=shape)
    result = polar_express_orthonormalize(tf.constant(matrix), steps=12, lower=1e-3).numpy()
    np.testing.assert_allclose(result, numpy_polar(matrix), atol=1e-8)


@pytest.mark.parametrize("shape", [(96, 64), (64, 64), (64, 96)])
def test_polar_express_float32_default_schedule_within_1e3(rng, shape):
    # Spread singular values [0.8, 1.5] like a kernel after a few hundred Adam steps from "orthogonal".
    k = min(shape)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], k)))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], k)))
    matrix = (u @ np.diag(np.linspace(0.8, 1.5, k)) @ v.T).astype("float32")
    result = polar_express_orthonormalize(tf.constant(matrix)).numpy()
    assert float(orthonormality_error(result)) < 1e-3
    np.testing.assert_allclose(result, numpy_polar(matrix.astype(np.float64)), atol=1e-3)


@pytest.mark.parametrize("shape", [(7, 5), (5, 5), (4, 6)])
def test_polar_express_gradient_is_the_polar_derivative(rng, shape):
    matrix = rng.normal(size=shape)
    weights = rng.normal(size=shape)
    variable = tf.Variable(matrix)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(polar_express_orthonormalize(variable, steps=14, lower=1e-3) * weights)
    grad = tape.gradient(loss, variable).numpy()
    for _ in range(3):
        direction = rng.normal(size=shape)
        exact = np.sum(numpy_polar_derivative(matrix, direction) * weights)
        assert np.sum(grad * direction) == pytest.approx(exact, rel=1e-7, abs=1e-9)


def test_polar_express_default_schedule_gradient(rng):
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    matrix = q @ np.diag(np.linspace(0.8, 1.5, 6)) @ np.linalg.qr(rng.normal(size=(6, 6)))[0]
    theoretical, numerical = tf.test.compute_gradient(
        lambda w: polar_express_orthonormalize(w), [tf.constant(matrix)], delta=1e-6
    )
    exact = np.stack([numpy_polar_derivative(matrix, e.reshape(6, 6)).reshape(-1) for e in np.eye(36)], 1)
    # The scale is under stop_gradient (the limit is scale-invariant), so the Jacobian of the
    # 3-step map differs from finite differences by the schedule's residual dependence on the
    # scale; both are within ~1% of the exact derivative of the polar factor.
    size = np.abs(exact).max()
    np.testing.assert_allclose(theoretical[0], exact, atol=1e-2 * size)
    np.testing.assert_allclose(numerical[0], exact, atol=1e-2 * size)


def test_polar_express_xla_and_zero_matrix(rng):
    matrix = tf.constant(rng.normal(size=(12, 8)).astype("float32"))
    compiled = tf.function(lambda m: polar_express_orthonormalize(m, steps=8, lower=0.01), jit_compile=True)
    np.testing.assert_allclose(compiled(matrix), polar_express_orthonormalize(matrix, steps=8, lower=0.01), atol=1e-5)
    assert np.all(polar_express_orthonormalize(tf.zeros((4, 3))).numpy() == 0)


@pytest.mark.parametrize("shape", [(3, 1), (6, 6), (4, 9)])
def test_polar_express_derivative_along_the_kernel_vanishes_as_for_the_polar_factor(shape):
    """The polar factor is scale-invariant: its derivative in the direction W itself is 0.

    It holds for a truncated schedule too (here not converged on the
    ill-conditioned kernels) because the scale is homogeneous in W for
    autodiff; with a fully stopped scale the spurious radial gradient drove
    the raw kernel's norm and a linear critic failed to learn.
    """
    matrix = tf.constant(np.random.default_rng(0).standard_normal(shape).astype("float32"))
    with tf.autodiff.ForwardAccumulator(matrix, matrix) as accumulator:
        result = polar_express_orthonormalize(matrix)
    assert np.abs(accumulator.jvp(result).numpy()).max() < 1e-5
