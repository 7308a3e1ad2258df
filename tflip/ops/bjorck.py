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
        matrix: float tensor `(m, n)`, or a batch `(..., m, n)` (each matrix
            orthonormalized on its own).
        iterations: Number of Björck steps (>= 0).
        order: Taylor order p >= 1 of each step.
        gram_iterations: Gram squarings used for the scaling bound.

    Returns:
        Tensor of the shape of `matrix` with singular values close to 1 (exactly
        1 in the limit).
    """
    matrix = tf.convert_to_tensor(matrix)
    a = matrix / gram_iteration_bound(matrix, gram_iterations)[..., None, None]
    coefficients = bjorck_coefficients(order)
    tall = matrix.shape[-2] >= matrix.shape[-1]
    size = min(matrix.shape[-2:])
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


def polar_express_coefficients(lower, steps):
    """Per-step coefficients `(a, b)` of the optimal cubic polar iteration.

    Each step applies `p(x) = a x + b x^3` to the singular values. Following
    "The Polar Express" (Amsel, Persson, Musco, Gower 2025, arXiv:2505.16932:
    the greedy rule `p_k = argmin_p max_{x in [l_k, u_k]} |1 - p(x)|` over odd
    polynomials of the given degree, then `[l_{k+1}, u_{k+1}] = p_k([l_k,
    u_k])`, which the paper proves optimal for the composition), step `k`
    takes the minimax cubic for an interval `[l_k, u_k]` known to hold every
    singular value. It equioscillates at `l_k`, at its interior maximum
    `x* = sqrt(-a / (3 b))` and at `u_k`, which gives the closed form derived
    here (for `u = 1`, `r = l`): `c = 1 + r + r^2`, `b = -2 / (c - 1 + (2 c / 3)
    sqrt(c / 3))`, `a = -b c`, and the next interval `[1 - E, 1 + E]` with
    `1 - E = -b (c - 1)`. Once the interval is tight the step tends to the
    Björck step `(3/2, -1/2)` (Newton-Schulz), so convergence is quadratic
    at the end and super-linear (growth `a` up to 3) for small singular
    values, where Björck only multiplies them by 1.5.

    Args:
        lower: Lower end `0 < l <= 1` of the initial interval `[l, 1]`.
        steps: Number of steps (>= 1).

    Returns:
        List of `steps` pairs `(a, b)` of Python floats, and the final
        worst-case error `max |sigma - 1|` that the schedule guarantees for
        starting singular values in `[l, 1]`.
    """
    if not 0.0 < lower <= 1.0:
        raise ValueError(f"`lower` must be in (0, 1], got {lower!r}.")
    low, high = float(lower), 1.0
    coefficients = []
    for _ in range(steps):
        r = low / high
        c = 1.0 + r + r * r
        b = -2.0 / (c - 1.0 + (2.0 * c / 3.0) * math.sqrt(c / 3.0))
        a = -b * c
        coefficients.append((a / high, b / high**3))
        low, high = -b * (c - 1.0), -(2.0 / 3.0) * b * c * math.sqrt(c / 3.0)
    return coefficients, max(1.0 - low, high - 1.0)


@tf.custom_gradient
def _gram(a):
    """`a^T a` whose gradient `a (g + g^T)` costs one product instead of two."""

    def grad(upstream):
        return tf.matmul(a, upstream + tf.linalg.matrix_transpose(upstream))

    return tf.matmul(a, a, transpose_a=True), grad


def polar_express_orthonormalize(matrix, steps=3, lower=0.35, gram_iterations=3):
    """Polar factor by a fixed schedule of optimal cubic steps (training path).

    Cheaper than `bjorck_orthonormalize` for the same accuracy:

    - the Gram matrix `W^T W` of the smaller side is formed once and serves
      both the first step and the scaling bound (the first squaring of Gram
      iteration, Delattre et al. 2023, is that matrix);
    - the scale is a certified upper bound of `sigma_max(W)` (Gram iteration
      continued from `W^T W`, so every singular value of `W / scale` is in
      `(0, 1]`), differentiated only through `||W||_F` (the bound over
      `||W||_F` is held constant): the map stays exactly scale-invariant, as
      the polar factor is, without differentiating the bound;
    - the steps use per-step minimax coefficients (`polar_express_coefficients`,
      Amsel et al. 2025) instead of the fixed Björck step, which reach a given
      accuracy in fewer products when the singular values start spread out;
    - the Gram products have a one-product gradient.

    Every step is differentiated, so the gradient is the exact gradient of the
    computed (orthonormal to the schedule's accuracy) map. The number of steps
    is fixed (no data-dependent loop). Singular values of `W / scale` below
    `lower` still grow (by up to `a` ~ 3 per step) but may end short of 1:
    pick `lower` below `sigma_min / scale` of the kernels you train.

    Args:
        matrix: float tensor `(m, n)`, or a batch `(..., m, n)` (each matrix
            orthonormalized on its own, with its own scale).
        steps: Number of cubic steps (>= 1).
        lower: Assumed lower end of the singular values of `W / scale`, in
            (0, 1]: the schedule is optimal for `[lower, 1]`.
        gram_iterations: Gram squarings of the scaling bound (>= 1; the first
            is the shared `W^T W`). With `t`, the bound exceeds `sigma_max`
            by at most `min(m, n)^(1 / 2^t)`.

    Returns:
        Tensor of the shape of `matrix` with singular values close to 1.
    """
    matrix = tf.convert_to_tensor(matrix)
    coefficients, _ = polar_express_coefficients(lower, steps)
    tall = matrix.shape[-2] >= matrix.shape[-1]
    a = matrix if tall else tf.linalg.matrix_transpose(matrix)
    gram = _gram(a)
    # The scale is the certified bound's value, differentiated only through the
    # Frobenius norm: `scale(t W) = t scale(W)` holds for autodiff too, so the
    # map stays exactly scale-invariant like the polar factor (its derivative
    # along W is 0). A fully stopped scale breaks that for a truncated schedule,
    # and the spurious radial gradient drives the raw kernel's norm in training.
    frobenius_sq = tf.linalg.trace(gram)[..., None, None]
    ratio = tf.stop_gradient(_gram_bound_squared(gram, gram_iterations - 1) / tf.maximum(frobenius_sq, 1e-30))
    scale_sq = ratio * frobenius_sq
    scale_sq = tf.where(frobenius_sq > 0, scale_sq, tf.ones_like(scale_sq))
    a = a / tf.sqrt(scale_sq)
    gram = gram / scale_sq
    for k, (c1, c3) in enumerate(coefficients):
        if k > 0:
            gram = _gram(a)
        a = c1 * a + c3 * tf.matmul(a, gram)
    return a if tall else tf.linalg.matrix_transpose(a)


def _gram_bound_squared(gram, squarings):
    """Upper bound of the largest eigenvalue of each PSD matrix `gram` (Gram iteration; shape `(..., 1, 1)`)."""
    log_bound = tf.zeros((), gram.dtype)
    g = gram
    for t in range(squarings):
        scale = tf.norm(g, axis=(-2, -1), keepdims=True)
        safe = tf.where(scale > 0, scale, tf.ones_like(scale))
        g = g / safe
        log_bound += tf.math.log(safe) / (2.0**t)
        g = tf.matmul(g, g)
    norm = tf.norm(g, axis=(-2, -1), keepdims=True)
    # A zero kernel: keep the scale at 1 so that the result is zero, not NaN.
    return tf.where(norm > 0, tf.exp(log_bound + tf.math.log(norm) / (2.0**squarings)), tf.ones_like(norm))


def orthonormality_error(matrix):
    """max |sigma_i - 1| over the singular values of `matrix` (float32 SVD)."""
    values = tf.linalg.svd(tf.cast(matrix, tf.float32), compute_uv=False)
    return tf.reduce_max(tf.abs(values - 1.0))
