"""Singular-value spectra of weights and gradients: r(W), top singular pairs, spectral clamping.

Used by the monitoring callbacks and the spectral gradient clamp (Sargent
thesis sections 4.2.1 and 4.2.3; Brock et al. 2018). All linear algebra runs
in float32: SVD does not run in float16/bfloat16, so inputs are cast first.
"""

import tensorflow as tf

_EPSILON = 1e-12


def weight_matrix(kernel):
    """The matrix whose spectrum describes a Dense or Conv kernel, as float32.

    A Dense kernel `(in, out)` is used as is; a convolution kernel
    `(kh, kw, in, out)` (or any rank > 2) is reshaped to `out x (kh*kw*in)`,
    the reshaped-kernel matrix of Miyato et al. and the Sargent thesis (its
    singular values are not those of the convolution operator: see
    `tflip.ops.conv.circular_conv_singular_values` for those).
    """
    kernel = tf.cast(tf.convert_to_tensor(kernel), "float32")
    if kernel.shape.rank == 2:
        return kernel
    if kernel.shape.rank is None or kernel.shape.rank < 2:
        raise ValueError(f"`kernel` must have rank >= 2, got shape {kernel.shape}.")
    return tf.transpose(tf.reshape(kernel, [-1, kernel.shape[-1]]))


def matrix_to_kernel(matrix, kernel_shape):
    """Inverse of `weight_matrix`: a matrix back to the kernel shape `kernel_shape`."""
    if len(kernel_shape) == 2:
        return matrix
    return tf.reshape(tf.transpose(matrix), kernel_shape)


def singular_values(matrix):
    """Singular values of a matrix (or a batch of matrices), float32, descending."""
    return tf.linalg.svd(tf.cast(matrix, "float32"), compute_uv=False)


def rank_collapse(values):
    """The rank-collapse metric r(W) from singular values (Sargent section 4.2.1).

    `r(W) = sum_i sigma_i / (k * sigma_max)` over the k = min(n, m) singular
    values: the area under the spectral plot (sorted singular values divided
    by the largest, against the index scaled to [0, 1]). It is 1 for a flat
    spectrum (an orthogonal matrix) and 1/k for a rank-one matrix, which is
    the behaviour the thesis describes ("normalized so that max r(W) = 1", a
    "spectral Gini coefficient"). The thesis prints `||W||_F / (m sigma(W))`,
    which does not have that property: for an m x m orthogonal matrix it is
    `1/sqrt(m)`; we implement the description, not the printed formula.

    Args:
        values: singular values, shape `(..., k)`, any order, >= 0.

    Returns:
        float32 tensor of shape `(...)`; 0 for an all-zero spectrum.
    """
    values = tf.cast(values, "float32")
    largest = tf.reduce_max(values, axis=-1)
    count = tf.cast(tf.shape(values)[-1], "float32")
    return tf.reduce_sum(values, axis=-1) / tf.maximum(count * largest, _EPSILON)


def _orthonormal_columns(matrix):
    q, _ = tf.linalg.qr(matrix)
    return q


def top_singular_pairs(matrix, right, iterations):
    """The two largest singular triplets of `matrix` by subspace iteration.

    `iterations` steps of `V <- orth(M^T M V)` from the two columns of
    `right` (a warm start keeps running estimates cheap), then a Rayleigh-Ritz
    step: the exact SVD of the small `M V`. The count is fixed (no
    data-dependent loop).

    Args:
        matrix: float32 `(n, m)` with `min(n, m) >= 2`.
        right: `(m, 2)` starting right vectors (need not be orthonormal).
        iterations: number of subspace-iteration steps, >= 0.

    Returns:
        `(sigma, left, right)`: sigma `(2,)` descending, left `(n, 2)` and
        right `(m, 2)` singular vectors, as column pairs. No gradient flows.
    """
    matrix = tf.stop_gradient(tf.cast(matrix, "float32"))
    v = _orthonormal_columns(tf.cast(right, "float32"))
    for _ in range(iterations):
        v = _orthonormal_columns(tf.matmul(matrix, tf.matmul(matrix, v), transpose_a=True))
    sigma, left, rotation = tf.linalg.svd(tf.matmul(matrix, v))
    return sigma, left, tf.matmul(v, rotation)


def spectral_clamp(matrix, ratio, sigma, left, right):
    """Clamps the top singular value of `matrix` to at most `ratio` times the second.

    `G - max(0, sigma_0 - ratio * sigma_1) u_0 v_0^T` (Sargent section 4.2.3,
    after Brock et al.'s spectral clamping). The thesis prints `min(0, .)`,
    which would never reduce sigma_0: a sign typo. With exact triplets the
    result has `sigma_0 = max(min(sigma_0, ratio * sigma_1), sigma_1)` and is
    `matrix` itself when `sigma_0 <= ratio * sigma_1` already.

    Args:
        matrix: `(n, m)`.
        ratio: the bound r >= 1 on sigma_0 / sigma_1.
        sigma: the top two singular values, as returned by `top_singular_pairs`.
        left: the corresponding left singular vectors `(n, 2)`.
        right: the corresponding right singular vectors `(m, 2)`.

    Returns:
        `(clamped, excess)`: the clamped matrix (dtype of `matrix`) and the
        amount `max(0, sigma_0 - ratio * sigma_1)` removed (float32).
    """
    excess = tf.nn.relu(sigma[0] - ratio * sigma[1])
    correction = excess * tf.tensordot(left[:, 0], right[:, 0], axes=0)
    return matrix - tf.cast(correction, matrix.dtype), excess
