"""Björck-Bowie orthonormalization (Anil, Lucas, Grosse 2019, eq. 3 and appendix B)."""

import math

import tensorflow as tf

from tflip.ops.gram import gram_iteration_bound


def bjorck_coefficients(order):
    """Taylor coefficients of (1 - q)^(-1/2) up to q^order: 1, 1/2, 3/8, 5/16, ..."""
    return [math.comb(2 * j, j) / 4.0**j for j in range(order + 1)]


def bjorck_orthonormalize(matrix, iterations, order=1, gram_iterations=3):
    """The closest orthonormal matrix (polar factor) by a fixed number of Björck steps.

    Iterates `A <- A (I + Q/2 + 3/8 Q^2 + ...)` with `Q = I - A^T A`, the
    order-`order` Taylor expansion of `A (A^T A)^(-1/2)`. The product is
    formed on the smaller Gram side (`A^T A` or `A A^T`), so the cost is
    `O(m n min(m, n))` per step.

    Convergence is guaranteed when every singular value of the start lies in
    (0, 1] (appendix B.3 asks for ||A^T A - I||_2 < 1): the matrix is first
    divided by a *certified* upper bound of its largest singular value from
    Gram iteration, which is much tighter than the sqrt(m n) max|W| bound
    (that bound leaves small singular values far below 1, where each step only
    multiplies them by 1.5). Everything is differentiable; the count of steps
    is fixed (no data-dependent loop).

    Args:
        matrix: float tensor `(m, n)`.
        iterations: Number of Björck steps (>= 0).
        order: Taylor order p >= 1 of each step.
        gram_iterations: Gram squarings used for the scaling bound.

    Returns:
        Tensor `(m, n)` with singular values close to 1 (exactly 1 in the limit).
    """
    matrix = tf.convert_to_tensor(matrix)
    a = matrix / gram_iteration_bound(matrix, gram_iterations)
    coefficients = bjorck_coefficients(order)
    tall = matrix.shape[0] >= matrix.shape[1]
    size = min(matrix.shape)
    identity = tf.eye(size, dtype=a.dtype)
    for _ in range(iterations):
        gram = tf.matmul(a, a, transpose_a=True) if tall else tf.matmul(a, a, transpose_b=True)
        q = identity - gram
        # Horner evaluation of the polynomial in Q.
        poly = coefficients[-1] * identity
        for c in reversed(coefficients[:-1]):
            poly = c * identity + tf.matmul(q, poly)
        a = tf.matmul(a, poly) if tall else tf.matmul(poly, a)
    return a


def orthonormality_error(matrix):
    """max |sigma_i - 1| over the singular values of `matrix` (float32 SVD)."""
    values = tf.linalg.svd(tf.cast(matrix, tf.float32), compute_uv=False)
    return tf.reduce_max(tf.abs(values - 1.0))
