"""Almost-orthogonal rescaling (AOL): a diagonal scaling that makes any kernel 1-Lipschitz.

Prach and Lampert, "Almost-Orthogonal Layers for Efficient General-Purpose
Lipschitz Networks" (ECML 2022). Theorem 1: for any matrix P (acting as
x -> P x) the diagonal D with

    D_ii = (sum_j |P^T P|_ij)^(-1/2)

makes P D have spectral norm at most 1 (D_ii = 0 where the sum vanishes,
i.e. where column i of P is zero). It is the Schur test: a symmetric matrix G
satisfies G <= diag(sum_j |G_ij|) in the Loewner order, so
D P^T P D <= I. Theorem 2 (the convolutional version): for a convolution
with kernel P, `|P^T P|` is replaced by the sum over all spatial offsets of
the absolute cross-correlation of the kernel with itself, the kernel of the
(infinite, block-Toeplitz) operator A^T A. The bound then holds on l2(Z^2);
a zero-padded convolution on any input size, with any strides, is a
restriction of that operator to some inputs and a subset of outputs, so its
norm is at most the same bound.

The weighted form `sum_j |G_ij| q_j / q_i` (q > 0) is the same Schur test with
weights; it bounds the same Gram matrix and is what Araujo et al. (ICLR 2023,
theorem 3) use for the SDP-based Lipschitz layers (`tflip.ops.sll`).

Kernels use the Keras layouts: `(in, out)` for dense maps `x -> x @ W` (so
P = W^T and the rescaled "input channels" are the rows of W) and
`(kh, kw, c_in, c_out)` for convolutions (cross-correlation, channels last).
"""

import itertools
import math

import numpy as np
import tensorflow as tf

# Relative margin of the float64 certified bound (rounding of sums of products in float64).
_FLOAT64_MARGIN = 1e-9


def gram_autocorrelation(kernel):
    """The kernel of A^T A for the convolution A with `kernel`, over all spatial offsets.

    `M[delta, i, j] = sum_{a, o} K[a + delta, i, o] K[a, j, o]` for every offset
    `delta` at which the two copies overlap, computed as one convolution of
    the kernel with itself (the kernel read as a batch of `c_in` images with
    `c_out` channels, "full" zero padding). The `(c_in, c_in)` block of A^T A
    between input positions p and p + delta is `M[-delta]` (on l2(Z^2); zero
    padding only removes terms).

    Args:
        kernel: `(kh, kw, c_in, c_out)` tensor.

    Returns:
        `(2 kh - 1, 2 kw - 1, c_in, c_in)` tensor of the kernel's dtype.
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    images = tf.transpose(kernel, (2, 0, 1, 3))  # (c_in, kh, kw, c_out): one image per input channel
    filters = tf.transpose(kernel, (0, 1, 3, 2))  # (kh, kw, c_out, c_in)
    padding = [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]
    correlation = tf.nn.conv2d(images, filters, strides=1, padding=padding)  # (c_in, 2kh-1, 2kw-1, c_in)
    return tf.transpose(correlation, (1, 2, 0, 3))


# Largest tap-pair Gram matrix (entries) that `absolute_gram` forms; above it the autocorrelation convolution
# (fewer entries, more multiplications) is used instead.
TAP_GRAM_LIMIT = 2**24


def _uses_tap_gram(kernel_shape):
    """Whether `absolute_gram` sums the tap Gram matrix (True) or convolves the kernel with itself.

    The Gram matrix has `(kh kw c_in)^2` entries, each `c_out` multiplications, and its blocks are moved
    and summed; the convolution multiplies about four times as much but moves far less. Measured on CPU
    (forward + backward), the Gram matrix is 2-5x faster from `c_out >= c_in` on (3x3 to 7x7, 16 to 128
    channels) and up to 5x slower with few output channels (7x7x64 -> 3).
    """
    kh, kw, c_in, c_out = kernel_shape
    return c_out >= c_in and (kh * kw * c_in) ** 2 <= TAP_GRAM_LIMIT


def _offset_of_tap_pairs(kh, kw):
    """For each tap pair (a, b) (row-major, a major), the index of its offset a - b among the kept offsets.

    Only the offsets of one half-plane (dh > 0, or dh = 0 and dw >= 0; offset (0, 0) first) are kept:
    M[-delta] = M[delta]^T adds no information. Pairs with another offset get the index `len(offsets)`.

    Returns:
        `(indices, number of kept offsets)`, indices an int32 array of length `(kh kw)^2`.
    """
    offsets = [(dh, dw) for dh in range(kh) for dw in range(-(kw - 1), kw) if dh > 0 or dw >= 0]
    index = {offset: i for i, offset in enumerate(offsets)}
    taps = list(itertools.product(range(kh), range(kw)))
    pairs = [index.get((ah - bh, aw - bw), len(offsets)) for (ah, aw) in taps for (bh, bw) in taps]
    return np.asarray(pairs, np.int32), len(offsets)


def _absolute_autocorrelation_sum(kernel):
    """`sum_delta |M[delta]|` from the Gram matrix of the kernel's taps (one matmul, then its blocks summed).

    Block (a, b) of the tap Gram matrix is `K[a] K[b]^T` (`c_in x c_in`), and `M[delta]` sums the blocks
    with a - b = delta: this multiplies each overlapping tap pair once, where the autocorrelation
    convolution also multiplies its zero padding.
    """
    kh, kw, c_in, c_out = kernel.shape
    taps = kh * kw
    flat = tf.reshape(kernel, (taps * c_in, -1))
    blocks = tf.reshape(tf.matmul(flat, flat, transpose_b=True), (taps, c_in, taps, c_in))
    blocks = tf.reshape(tf.transpose(blocks, (0, 2, 1, 3)), (taps * taps, c_in * c_in))
    segments, count = _offset_of_tap_pairs(kh, kw)
    if count <= c_out:
        # A dense 0/1 matmul then costs at most the Gram matrix itself, and runs faster than a segment sum.
        sums = np.eye(count + 1)[segments][:, :count].T
        offsets = tf.matmul(tf.constant(sums, blocks.dtype), blocks)
    else:
        offsets = tf.math.unsorted_segment_sum(blocks, tf.constant(segments), count + 1)[:count]
    offsets = tf.abs(tf.reshape(offsets, (count, c_in, c_in)))
    half = tf.reduce_sum(offsets[1:], axis=0)
    return offsets[0] + half + tf.transpose(half)


def absolute_gram(kernel):
    """`sum over offsets of |A^T A|` as a `(c_in, c_in)` matrix: `|W W^T|` for a dense `(in, out)` kernel."""
    if len(kernel.shape) == 2:
        return tf.abs(tf.matmul(kernel, kernel, transpose_b=True))
    if len(kernel.shape) == 4:
        if _uses_tap_gram(tuple(kernel.shape)):
            return _absolute_autocorrelation_sum(kernel)
        return tf.reduce_sum(tf.abs(gram_autocorrelation(kernel)), axis=(0, 1))
    raise ValueError(f"`kernel` must have rank 2 (dense) or 4 (conv2d), got shape {kernel.shape}.")


def aol_row_sums(kernel, log_q=None):
    """The Schur-test sums `s_i = sum_j |G_ij| q_j / q_i` of the kernel's input-side Gram matrix.

    Args:
        kernel: `(in, out)` or `(kh, kw, c_in, c_out)` tensor.
        log_q: optional `(c_in,)` tensor, `q = exp(log_q)` (Araujo et al. 2023,
            theorem 3); `None`: q = 1 (Prach and Lampert 2022).

    Returns:
        `(c_in,)` tensor.
    """
    gram = absolute_gram(kernel)
    if log_q is None:
        return tf.reduce_sum(gram, axis=1)
    log_q = tf.cast(log_q, gram.dtype)
    # exp(log_q_j - log_q_i) without forming q itself, so large |log_q| cannot overflow one factor alone.
    return tf.reduce_sum(gram * tf.exp(log_q[None, :] - log_q[:, None]), axis=1)


def _safe_rsqrt(sums):
    """`sums^(-1/2)`, 0 where `sums` is 0 (a zero channel stays zero at any scale; gradients stay finite)."""
    positive = sums > 0
    return tf.where(positive, tf.math.rsqrt(tf.where(positive, sums, tf.ones_like(sums))), tf.zeros_like(sums))


def aol_scaling(kernel, log_q=None):
    """The diagonal of D: `d_i = s_i^(-1/2)` (`aol_row_sums`), 0 for zero channels."""
    return _safe_rsqrt(aol_row_sums(kernel, log_q))


def aol_rescale(kernel, log_q=None):
    """The kernel with its input channels rescaled by D (Prach and Lampert 2022, theorems 1 and 2).

    The map of the result has operator norm at most 1: for a dense kernel
    exactly (theorem 1), for a convolution on any input size, with zero
    padding and any strides (theorem 2; strides and padding select a
    sub-matrix of the operator on l2(Z^2)).

    Args:
        kernel: `(in, out)` or `(kh, kw, c_in, c_out)` float tensor.
        log_q: optional Schur-test weights (see `aol_row_sums`).

    Returns:
        A tensor of the kernel's shape and dtype.
    """
    scale = aol_scaling(kernel, log_q)
    if len(kernel.shape) == 2:
        return kernel * scale[:, None]
    return kernel * scale[None, None, :, None]


def aol_norm_upper_bound(kernel, log_q=None):
    """Certified operator-norm bound `sqrt(max_i sum_j |G_ij| q_j / q_i)` of a kernel's map, any input size.

    The Schur test of Prach and Lampert's theorems 1-2 applied to the kernel
    itself, with any weights q > 0 (computed in float64 and raised by a
    relative 1e-9 for rounding). It bounds the zero-padded convolution on
    every input size and stride. For a kernel rescaled by D, use
    `rescaled_norm_upper_bound`: the unweighted test is not tight there.

    Args:
        kernel: `(in, out)` or `(kh, kw, c_in, c_out)` tensor.
        log_q: optional Schur-test weights (see `aol_row_sums`); any q > 0 gives a valid bound.

    Returns:
        A Python float.
    """
    sums = aol_row_sums(tf.cast(kernel, tf.float64), None if log_q is None else tf.cast(log_q, tf.float64))
    return math.sqrt(max(float(tf.reduce_max(sums)), 0.0)) * (1.0 + _FLOAT64_MARGIN)


def rescaled_norm_upper_bound(raw_kernel, rescaled_kernel, log_q=None):
    """Certified operator-norm bound of `rescaled_kernel`, about 1 when it is `aol_rescale(raw_kernel, log_q)`.

    With G the input-side Gram of the raw kernel and d its AOL scaling, the
    rescaled kernel's Gram is D G D, and the Schur test of D G D with the
    weights q / d gives `d_i^2 sum_j |G_ij| q_j / q_i = 1` exactly: the
    theorem's own certificate. Here those weights are computed from the raw
    kernel in float64 and the test is applied to the rescaled kernel as it
    is (e.g. the float32 inference kernel, scaled by a gain), so the result
    certifies the kernel the layer actually uses: about `gain` times 1, up to
    the float32 rounding of the rescaling.

    Args:
        raw_kernel: the kernel before rescaling, `(in, out)` or `(kh, kw, c_in, c_out)`.
        rescaled_kernel: the kernel to certify, same shape.
        log_q: the weights the rescaling used (`None`: q = 1).

    Returns:
        A Python float.
    """
    raw_kernel = tf.cast(raw_kernel, tf.float64)
    log_q = None if log_q is None else tf.cast(log_q, tf.float64)
    scale = aol_scaling(raw_kernel, log_q)
    # Zero channels (d = 0) have zero rows and columns in D G D; any weight works for them.
    log_weights = tf.where(scale > 0, -tf.math.log(tf.where(scale > 0, scale, tf.ones_like(scale))), 0.0)
    if log_q is not None:
        log_weights = log_weights + log_q
    return aol_norm_upper_bound(rescaled_kernel, log_weights)
