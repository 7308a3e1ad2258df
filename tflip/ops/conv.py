"""Convolutions as linear operators: adjoint, explicit matrix, exact norm, spectra, bounds.

A 2-D convolution with kernel K of shape `(kh, kw, c_in, c_out)` acting on
inputs of shape `(h, w, c_in)` is a linear map whose matrix is doubly block
Toeplitz. Its operator 2-norm (the Lipschitz constant of the layer, Sargent
thesis theorem 2.4.7) depends on the input size, strides and padding, and is
NOT the norm of the reshaped kernel (which only bounds it up to a factor;
Sargent lemma 2.4.8). Everything here works on that true operator.
"""

import math

import numpy as np
import tensorflow as tf

from tflip.ops.gram import gram_iteration_bound
from tflip.ops.power_iteration import operator_norm_to_tolerance

PADDINGS = ("same", "valid")


class ConvGeometry:
    """Shape data of a convolution viewed as a linear map (hashable, plain Python).

    Args:
        input_size: `(h, w)` spatial size of the inputs the map acts on.
        strides: `(sh, sw)`.
        padding: `"same"` or `"valid"` (TensorFlow's conventions).
        dilation: `(dh, dw)`.
    """

    def __init__(self, input_size, strides=(1, 1), padding="same", dilation=(1, 1)):
        self.input_size = tuple(None if s is None else int(s) for s in input_size)
        self.strides = tuple(int(s) for s in strides)
        self.padding = padding.lower()
        self.dilation = tuple(int(d) for d in dilation)
        if self.padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {PADDINGS}, got {padding!r}.")

    def apply(self, x, kernel):
        """The convolution `A x` (cross-correlation, as Keras computes it)."""
        return tf.nn.conv2d(x, dilate_kernel(kernel, self.dilation), self.strides, self.padding.upper())

    def apply_adjoint(self, y, kernel):
        """The adjoint `A^T y`: the transposed convolution back to the input size.

        `conv2d_transpose` is the gradient of `conv2d` with respect to its
        input, hence the exact adjoint including strides and zero padding.
        Dilation is expanded into the kernel because TensorFlow's CPU kernels
        for the transpose do not support it.
        """
        kernel = dilate_kernel(kernel, self.dilation)
        shape = tf.stack([tf.shape(y)[0], *self.input_size, tf.shape(kernel)[2]])
        return tf.nn.conv2d_transpose(y, kernel, shape, self.strides, self.padding.upper())

    def operators(self, kernel):
        return (lambda u: self.apply(u, kernel), lambda v: self.apply_adjoint(v, kernel))

    def output_phase(self, kernel_size):
        """Offset modulo the stride of the first output window (TensorFlow's padding rule)."""
        if self.padding == "valid":
            return (0, 0)
        phases = []
        for n, k, s in zip(self.input_size, self.effective_kernel_size(kernel_size), self.strides):
            out = -(-n // s)
            pad_before = max((out - 1) * s + k - n, 0) // 2
            phases.append((-pad_before) % s)
        return tuple(phases)

    def effective_kernel_size(self, kernel_size):
        """Spatial size of the kernel once dilated."""
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, kernel_size))

    def output_size(self, kernel_size):
        """Spatial size of the outputs (None where the input size is None), TensorFlow's rule."""
        size = []
        for n, k, s in zip(self.input_size, self.effective_kernel_size(kernel_size), self.strides):
            if n is None:
                size.append(None)
            elif self.padding == "same":
                size.append(-(-n // s))
            else:
                size.append((n - k) // s + 1)
        return tuple(size)


def conv_matrix(kernel, geometry):
    """The explicit matrix of the convolution, for small inputs (tests, references).

    Built by applying the convolution to every standard basis vector, in
    float64, so it is exactly the map TensorFlow computes.

    Returns:
        A numpy array `A` of shape `(h_out * w_out * c_out, h * w * c_in)` with
        `vec(conv(x)) = A @ vec(x)` in row-major (NHWC) order.
    """
    kernel = tf.cast(kernel, tf.float64)
    h, w = geometry.input_size
    c_in = kernel.shape[2]
    n = h * w * c_in
    basis = tf.reshape(tf.eye(n, dtype=tf.float64), (n, h, w, c_in))
    out = geometry.apply(basis, kernel)
    return tf.reshape(out, (n, -1)).numpy().T


def conv_operator_norm(kernel, geometry, tolerance=1e-8, max_iterations=20000, seed=0):
    """The exact operator 2-norm of the zero-padded convolution by power iteration.

    Runs in float64 with the convolution and its transpose until the
    estimate is stable to `tolerance` (relative). For tests and monitoring.

    Returns:
        A Python float (a lower bound that equals the norm once converged).
    """
    kernel = tf.cast(kernel, tf.float64)
    start = tf.random.stateless_normal((1, *geometry.input_size, kernel.shape[2]), (seed, 0), dtype=tf.float64)
    norm, _ = operator_norm_to_tolerance(*geometry.operators(kernel), start, tolerance, max_iterations)
    return float(norm)


def reshaped_kernel_norm(kernel):
    """Spectral norm of the kernel reshaped to `(kh * kw * c_in, c_out)` (Miyato et al.).

    This is what reshaped-kernel spectral normalization divides by. It is not
    the operator norm of the convolution (Sargent lemma 2.4.8): the true norm
    can exceed it by up to a factor sqrt(kh * kw / (sh * sw)) (roughly).
    """
    kernel = tf.cast(kernel, tf.float32)
    matrix = tf.reshape(kernel, (-1, kernel.shape[-1]))
    return tf.linalg.svd(matrix, compute_uv=False)[0]


def dilate_kernel(kernel, dilation):
    """The equivalent undilated kernel: zeros inserted between the taps."""
    dh, dw = dilation
    if dh == 1 and dw == 1:
        return kernel
    kh, kw = kernel.shape[0], kernel.shape[1]
    return tf.scatter_nd(
        [[i * dh, j * dw] for i in range(kh) for j in range(kw)],
        tf.reshape(kernel, (kh * kw, *kernel.shape[2:])),
        (dh * (kh - 1) + 1, dw * (kw - 1) + 1, *kernel.shape[2:]),
    )


def _polyphase_frequency_blocks(kernel, grid, strides, phase, full_spectrum=False):
    """Transfer matrices of a strided circular convolution, one per frequency.

    A stride-s cross-correlation on an `N = s * M` grid whose outputs start
    at offset `r` reads input `s * (m + q) + p`; splitting the input into its
    `s_h * s_w` polyphase components (a permutation, hence unitary) turns it
    into a sum of stride-1 correlations on the `M` grid, one per phase `p`,
    with kernel taps `K[a]` moved to `q = (r + a) // s`. The DFT then
    block-diagonalizes it into `c_out x (s_h * s_w * c_in)` blocks.

    Args:
        full_spectrum: all `M_h * M_w` frequencies (each counted once, for
            spectra) instead of the `M_w // 2 + 1` non-redundant columns of a
            real FFT (enough for norms).

    Returns:
        Complex tensor `(M_h, M_w or M_w // 2 + 1, c_out, s_h * s_w * c_in)`.
    """
    kh, kw, c_in, c_out = kernel.shape
    (sh, sw), (rh, rw) = strides, phase
    mh, mw = grid[0] // sh, grid[1] // sw
    if full_spectrum:
        kernel = tf.cast(kernel, tf.complex128 if kernel.dtype == tf.float64 else tf.complex64)
    transform = tf.signal.fft2d if full_spectrum else tf.signal.rfft2d
    phase_blocks = []
    for ph in range(sh):
        taps_h = [a for a in range(kh) if (rh + a) % sh == ph]
        for pw in range(sw):
            taps_w = [b for b in range(kw) if (rw + b) % sw == pw]
            indices = [[(rh + a) // sh, (rw + b) // sw] for a in taps_h for b in taps_w]
            if not indices:
                phase_kernel = tf.zeros((mh, mw, c_in, c_out), kernel.dtype)
            else:
                taps = tf.stack([kernel[a, b] for a in taps_h for b in taps_w])
                phase_kernel = tf.scatter_nd(indices, taps, (mh, mw, c_in, c_out))
            spectrum = transform(tf.transpose(phase_kernel, (3, 2, 0, 1)))
            phase_blocks.append(tf.transpose(spectrum, (2, 3, 0, 1)))
    return tf.concat(phase_blocks, axis=-1)


def circular_conv_singular_values(kernel, input_size, strides=(1, 1), dilation=(1, 1), max_frequencies=None, seed=0):
    """All singular values of the convolution with circular padding.

    Sedghi, Gupta, Long (2019): the stride-1 circular convolution on an
    `h x w` grid is block-diagonalized by the 2-D DFT, so its singular values
    are those of the `c_out x c_in` kernel transfer matrices at the `h * w`
    frequencies. Strides are handled exactly by the polyphase decomposition
    (`c_out x (s_h * s_w * c_in)` blocks at the `(h / s_h) * (w / s_w)`
    frequencies); the output offset of a circular convolution is a circular
    shift, which does not change the singular values. No matrix of the
    operator's size is ever formed.

    Args:
        kernel: `(kh, kw, c_in, c_out)` kernel.
        input_size: `(h, w)`, each at least the (dilated) kernel size and
            divisible by the stride.
        strides: `(s_h, s_w)`.
        dilation: `(d_h, d_w)`.
        max_frequencies: bounds the cost for large layers: when the operator
            has more frequencies than this, the singular values of that many
            frequencies drawn uniformly without replacement (seeded) are
            returned, an unbiased sample of the spectrum (its maximum is then
            a lower bound of the norm). `None`: all frequencies.
        seed: seed of that sample.

    Returns:
        float32 tensor of singular values in descending order: all
        `(h * w / (s_h * s_w)) * min(c_out, s_h * s_w * c_in)` of them, or
        those of the sampled frequencies.
    """
    kernel = dilate_kernel(tf.cast(kernel, tf.float32), tuple(dilation))
    h, w = input_size
    sh, sw = strides
    if kernel.shape[0] > h or kernel.shape[1] > w:
        raise ValueError(
            f"`input_size` {tuple(input_size)} must be at least the kernel size {tuple(kernel.shape[:2])}."
        )
    if h % sh or w % sw:
        raise ValueError(f"`input_size` {tuple(input_size)} must be divisible by `strides` {tuple(strides)}.")
    blocks = _polyphase_frequency_blocks(kernel, (h, w), (sh, sw), (0, 0), full_spectrum=True)
    blocks = tf.reshape(blocks, (-1, *blocks.shape[2:]))
    if max_frequencies is not None and blocks.shape[0] > max_frequencies:
        chosen = tf.random.experimental.stateless_shuffle(tf.range(blocks.shape[0]), (seed, 0))[:max_frequencies]
        blocks = tf.gather(blocks, chosen)
    values = tf.reshape(tf.linalg.svd(blocks, compute_uv=False), [-1])
    return tf.sort(values, direction="DESCENDING")


# Sizes (h * w * c) for which `conv_norm_upper_bound` computes the exact norm from the explicit matrix: the smaller
# of input and output at most EXACT_NORM_LIMIT, the larger at most 4x that. The Gram matrix on the smaller side and its
# eigenvalues cost a fraction of a second there.
EXACT_NORM_LIMIT = 1024
# Relative margin on the computed largest singular value. Worst-case rounding of the float64 Gram product is
# m * 1.1e-16 * ||A||_F^2 <= m * rank * 1.1e-16 * sigma^2 (<= 5e-10 sigma^2 at the limits), half that on sigma;
# the symmetric eigensolver adds about n * 1.1e-16.
_EXACT_MARGIN = 1e-9


def explicit_norm_upper_bound(matrix):
    """Certified upper bound of the largest singular value of an explicit matrix, tight to a relative 1e-9.

    Uses the eigenvalues of the smaller Gram matrix (`A A^T` or `A^T A`) in
    float64, which is much cheaper than an SVD of a tall matrix, and raises
    the result by `_EXACT_MARGIN` to cover rounding.
    """
    matrix = np.asarray(matrix, dtype="float64")
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return math.sqrt(max(float(np.linalg.eigvalsh(gram)[-1]), 0.0)) * (1.0 + _EXACT_MARGIN)


def conv_norm_upper_bound(kernel, geometry, iterations=6, exact_limit=EXACT_NORM_LIMIT):
    """Certified upper bound of the zero-padded convolution's operator norm.

    Small convolutions (the smaller of input and output dimension `h * w * c`
    at most `exact_limit`, the larger at most 4 times that) get the exact
    norm: the largest singular value of the explicit matrix
    (`explicit_norm_upper_bound`, float64), raised by a relative 1e-9 to
    cover rounding. On small inputs the circular bound below has the most
    slack (measured 1.12-1.18x for stride-2 convolutions on 8x8 digits).

    Otherwise: the zero-padded (and possibly strided) convolution on an
    `n x m` input is a restriction of the full linear convolution, which
    equals the circular convolution on the `(n + k - 1) x (m + k - 1)` grid
    applied to the zero-embedded input; restriction and subsampling only
    lower the norm. Strides subsample the outputs; the polyphase
    decomposition keeps the bound tight for them (rather than bounding by the
    stride-1 norm). The circular norm is the largest spectral norm of the
    frequency blocks, bounded from above by Gram iteration (Delattre,
    Barthelemy, Araujo, Allauzen, 2023). Computed in float64 so rounding
    cannot break the bound in practice.

    Args:
        kernel: `(kh, kw, c_in, c_out)` kernel.
        geometry: the `ConvGeometry` (input size, strides, padding, dilation).
        iterations: Gram iterations of the circular bound.
        exact_limit: largest smaller side (input or output dimension) of a
            convolution computed exactly; 0 always uses the circular bound.

    Returns:
        A Python float >= the exact operator norm.
    """
    h, w = geometry.input_size
    out_h, out_w = geometry.output_size(kernel.shape[:2])
    sides = sorted((h * w * kernel.shape[2], out_h * out_w * kernel.shape[3]))
    if sides[0] <= exact_limit and sides[1] <= 4 * exact_limit:
        return explicit_norm_upper_bound(conv_matrix(kernel, geometry))
    kernel = dilate_kernel(tf.cast(kernel, tf.float64), geometry.dilation)
    # The smallest grid that holds the full linear convolution without
    # wrap-around and that the strides divide.
    grid = [
        -(-(n + k - 1) // s) * s
        for n, k, s in zip(geometry.input_size, kernel.shape[:2], geometry.strides)
    ]
    blocks = _polyphase_frequency_blocks(kernel, grid, geometry.strides, geometry.output_phase(kernel.shape[:2]))
    return float(tf.reduce_max(gram_iteration_bound(blocks, iterations)))
