"""Orthogonal convolutions by block convolution orthogonal parameterization (BCOP).

Li, Haque, Anil, Lucas, Grosse, Jacobsen, "Preventing Gradient Attenuation in
Lipschitz Constrained Convolutional Networks", NeurIPS 2019, sec. 4 (built on
the block convolutions of Xiao et al. 2018, "Dynamical isometry and a mean
field theory of CNNs", sec. 3).

A convolution with circular padding is block-diagonalized by the 2-D DFT: at
frequency w its transfer matrix is `T(w) = sum_t K[t]^T exp(i <w, t>)`
(`c_out x c_in`), and the convolution is orthogonal exactly when every
`T(w)` is unitary (Sedghi, Gupta, Long 2019). BCOP builds kernels for which
this holds by construction:

- a *block convolution* of size 2 with taps `[P, I - P]`, `P` a symmetric
  projector, has `T(w) = P + (I - P) e^{iw}`, unitary for every `w`
  (`T^* T = P + (I - P) = I`, as `P (I - P) = 0`);
- products of unitary transfer matrices are unitary, so composing `k - 1`
  such convolutions along the height and `k - 1` along the width gives an
  orthogonal `k x k` convolution (taps: products of matrix polynomials);
- a `c_in x c_out` matrix with orthonormal rows (or columns) as a 1x1
  convolution in front of (or behind) it makes the map an isometry (or a
  co-isometry) between different channel counts.

`P = Q Q^T` where `Q` has orthonormal columns (here: the polar factor of a
raw parameter, `tflip.ops.bjorck`). Strides use invertible downsampling
(space-to-depth, a permutation: Li et al. sec. 4.3) in front of a stride-1
orthogonal convolution with `s_h * s_w * c_in` input channels; the
composition is itself a strided convolution, whose kernel
`strided_kernel_from_downsampled` gives.
"""

import math

import numpy as np
import tensorflow as tf

from tflip.ops.conv import _polyphase_frequency_blocks

# Relative margin raising float64 norms computed from explicit small matrices to certified bounds (as in
# `tflip.ops.conv`): the rounding of the products and of the symmetric eigensolver is far below it.
_CERTIFICATION_MARGIN = 1e-9


def projectors_from_frames(frames):
    """Symmetric projectors `P = Q Q^T` from frames `Q` with orthonormal columns.

    Args:
        frames: float tensor `(n, c, r)`: `n` frames, each `c x r` with
            orthonormal columns (`r <= c`).

    Returns:
        Tensor `(n, c, c)`: the orthogonal projectors onto the frames' column spaces.
    """
    frames = tf.convert_to_tensor(frames)
    return tf.matmul(frames, frames, transpose_b=True)


def block_convolution_taps(projectors):
    """Taps of the 1-D composition of the block convolutions `[P_j, I - P_j]`.

    Li et al. 2019 eq. (5) and sec. 4.1. In Keras' layout (inputs times
    taps, `y[i] = sum_t x[i + t] A[t]`), applying the taps `A` and then the
    block convolution `[P, I - P]` gives the taps
    `A'[t] = A[t] P + A[t - 1] (I - P)` (zero outside `0..len(A) - 1`): a
    product of matrix polynomials, whose transfer matrices are the products
    of the factors' unitary transfer matrices.

    Args:
        projectors: float tensor `(n, c, c)` (static shape) of symmetric
            projectors, applied first to last; `n = 0` gives the identity.

    Returns:
        Tensor `(n + 1, c, c)`: the taps of a stride-1 orthogonal 1-D
        convolution of kernel size `n + 1`.
    """
    projectors = tf.convert_to_tensor(projectors)
    taps = tf.eye(projectors.shape[-1], dtype=projectors.dtype)[None]
    for j in range(projectors.shape[0]):
        p = projectors[j]
        # A'[t] = A[t] P for t < len(A) and A'[t] += A[t - 1] (I - P) for t >= 1.
        kept = tf.matmul(taps, p)
        shifted = taps - kept  # A[t] (I - P)
        zeros = tf.zeros_like(taps[:1])
        taps = tf.concat([kept, zeros], 0) + tf.concat([zeros, shifted], 0)
    return taps


def orthogonal_conv_kernel(channel_matrix, vertical_projectors, horizontal_projectors):
    """The `(kh, kw, c_in, c_out)` kernel of a stride-1 BCOP convolution.

    With vertical taps `V[a]` and horizontal taps `W[b]` (each from
    `block_convolution_taps`, orthogonal `c x c` convolutions) and the
    `c_in x c_out` matrix `M`:

    - `c_in <= c_out` (`M` has orthonormal rows, `c = c_out`): the kernel is
      `K[a, b] = M V[a] W[b]`; the transfer matrices satisfy
      `T(w)^* T(w) = M M^T = I`: an isometry (all `c_in` singular values per
      frequency equal 1), orthogonal when `c_in == c_out`;
    - `c_in > c_out` (`M` has orthonormal columns, `c = c_in`): the kernel is
      `K[a, b] = V[a] W[b] M`; `T(w) T(w)^* = M^T M = I`: a co-isometry (all
      `c_out` singular values per frequency equal 1).

    Args:
        channel_matrix: `(c_in, c_out)` with orthonormal rows (`c_in <= c_out`)
            or columns (`c_in > c_out`).
        vertical_projectors: `(kh - 1, c, c)` symmetric projectors.
        horizontal_projectors: `(kw - 1, c, c)` symmetric projectors.

    Returns:
        Tensor `(kh, kw, c_in, c_out)` with `c = max(c_in, c_out)`: the
        kernel of a convolution whose circular-padding map has every singular
        value equal to 1.
    """
    channel_matrix = tf.convert_to_tensor(channel_matrix)
    c_in, c_out = channel_matrix.shape
    vertical = block_convolution_taps(vertical_projectors)
    horizontal = block_convolution_taps(horizontal_projectors)
    if c_in <= c_out:
        vertical = tf.einsum("ij,ajk->aik", channel_matrix, vertical)
        return tf.einsum("aik,bkl->abil", vertical, horizontal)
    horizontal = tf.einsum("bkl,lo->bko", horizontal, channel_matrix)
    return tf.einsum("aik,bko->abio", vertical, horizontal)


def strided_kernel_from_downsampled(kernel, strides):
    """The kernel of `conv(space_to_depth(x))` as one strided convolution of `x`.

    Invertible downsampling with window `(s_h, s_w)` puts input pixel
    `(s_h m + p, s_w n + q, c)` in channel `(p s_w + q) c_in + c` of coarse
    pixel `(m, n)` (the ordering of `tf.nn.space_to_depth`); a stride-1
    convolution of the coarse image with `kernel` (`(kh, kw, s_h s_w c_in,
    c_out)`) is then the stride-`s` convolution of the fine image with the
    `(s_h kh, s_w kw, c_in, c_out)` kernel `K'[s_h a + p, s_w b + q, c] =
    K[a, b, (p s_w + q) c_in + c]`, and both have the same singular values
    (the downsampling is a permutation).

    Args:
        kernel: `(kh, kw, s_h * s_w * c_in, c_out)`.
        strides: `(s_h, s_w)`.

    Returns:
        Tensor `(s_h * kh, s_w * kw, c_in, c_out)`.
    """
    sh, sw = strides
    if sh == sw == 1:
        return kernel
    kh, kw, depth, c_out = kernel.shape
    c_in = depth // (sh * sw)
    blocks = tf.reshape(kernel, (kh, kw, sh, sw, c_in, c_out))
    blocks = tf.transpose(blocks, (0, 2, 1, 3, 4, 5))
    return tf.reshape(blocks, (kh * sh, kw * sw, c_in, c_out))


def downsampled_kernel_from_strided(kernel, strides):
    """Inverse of `strided_kernel_from_downsampled`.

    Args:
        kernel: `(s_h * kh, s_w * kw, c_in, c_out)`.
        strides: `(s_h, s_w)`.

    Returns:
        Tensor `(kh, kw, s_h * s_w * c_in, c_out)`.
    """
    sh, sw = strides
    if sh == sw == 1:
        return kernel
    fh, fw, c_in, c_out = kernel.shape
    blocks = tf.reshape(kernel, (fh // sh, sh, fw // sw, sw, c_in, c_out))
    blocks = tf.transpose(blocks, (0, 2, 1, 3, 4, 5))
    return tf.reshape(blocks, (fh // sh, fw // sw, sh * sw * c_in, c_out))


def circular_padding_amounts(kernel_size, strides):
    """`((top, bottom), (left, right))` of the circular padding of a strided `kernel_size` convolution.

    The same split as TensorFlow's "SAME" padding on a size divisible by the
    stride (`s (k - 1)` in all per axis, the smaller half first for the
    (possibly) strided kernel `s k`), so circular and zero padding differ
    only at the border. With it a valid convolution keeps `n / s` outputs.
    """
    pads = []
    for k, s in zip(kernel_size, strides):
        total = s * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def circular_pad(x, padding):
    """Pads `(batch, h, w, c)` images by wrapping around (periodic extension).

    Args:
        x: Tensor `(batch, h, w, c)`.
        padding: `((top, bottom), (left, right))`, each at most the size of
            its axis.

    Returns:
        Tensor `(batch, h + top + bottom, w + left + right, c)`.
    """
    (top, bottom), (left, right) = padding
    shape = tf.TensorShape(x.shape)
    _, h, w, c = shape if shape.rank == 4 else (None,) * 4
    for size, before, after in ((h, top, bottom), (w, left, right)):
        if size is not None and max(before, after) > size:
            raise ValueError(f"Circular padding {padding} needs inputs at least that large, got {x.shape}.")
    if not any((top, bottom, left, right)):
        return x
    if h is None or w is None or c is None:
        return _circular_pad_by_concatenation(x, padding)
    # One gather of the flattened grid copies the input once; wrapping each axis by
    # concatenation copies it twice and costs a quarter more in a conv layer's call.
    rows = np.arange(-top, h + bottom) % h
    columns = np.arange(-left, w + right) % w
    indices = (rows[:, None] * w + columns[None, :]).reshape(-1)
    padded = tf.gather(tf.reshape(x, (-1, h * w, c)), tf.constant(indices, tf.int32), axis=1)
    return tf.reshape(padded, (-1, h + top + bottom, w + left + right, c))


def _circular_pad_by_concatenation(x, padding):
    """`circular_pad` for inputs whose spatial size is only known at run time."""
    # Width first: wrapping it concatenates short inner segments (the costly copy), before the height grows.
    for axis, (before, after) in ((2, padding[1]), (1, padding[0])):
        pieces = []
        if before:
            pieces.append(_axis_slice(x, axis, -before, None))
        pieces.append(x)
        if after:
            pieces.append(_axis_slice(x, axis, 0, after))
        if len(pieces) > 1:
            x = tf.concat(pieces, axis=axis)
    return x


def circular_conv2d(x, kernel, strides=(1, 1)):
    """The convolution of `x` with circular padding (cross-correlation, as Keras computes it).

    `x` is wrapped around by `circular_padding_amounts` (TensorFlow's "SAME"
    split) and convolved without further padding, so output `(i, j)` reads
    the same input window as a "SAME" convolution, taken periodically.

    Args:
        x: Tensor `(batch, h, w, c_in)`; `h`, `w` divisible by the strides
            and at least the padding.
        kernel: `(kh, kw, c_in, c_out)` (for a strided BCOP map the strided
            kernel: `kh`, `kw` multiples of the strides).
        strides: `(s_h, s_w)`.

    Returns:
        Tensor `(batch, h / s_h, w / s_w, c_out)`.
    """
    sh, sw = strides
    padding = circular_padding_amounts((kernel.shape[0] // sh, kernel.shape[1] // sw), strides)
    return tf.nn.conv2d(circular_pad(x, padding), kernel, strides, "VALID")


def _axis_slice(x, axis, start, stop):
    index = [slice(None)] * 4  # (batch, h, w, c) images, also when the rank is only known at run time
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def transfer_gram_norm_bound(kernel):
    """Certified bound of the norm of a convolution on *every* grid, circular or zero padded.

    The transfer matrices `T(w)` (`c_out x c_in`) of a stride-1 convolution
    give its circular-padding singular values on any grid (at that grid's
    frequencies), and a zero-padded convolution is a restriction of a
    circular one on a larger grid, so `sup_w ||T(w)||` bounds both. With
    `c_in <= c_out`, `T(w)^* T(w) = sum_d R[d] e^{i <w, d>}` where
    `R[d] = sum_t K[t] K[t + d]^T` (`c_in x c_in`, the kernel's
    autocorrelation), hence `||T(w)||^2 <= sum_d ||R[d]||_2` for every `w`
    (triangle inequality); with `c_in > c_out` the same holds for
    `T T^*` with `R[d] = sum_t K[t]^T K[t + d]`. For an orthogonal
    construction `R[0] = I` and `R[d] = 0` otherwise, so the bound is 1 up
    to the kernel's rounding: tight, and independent of the input size.

    Computed in float64 (numpy) and raised by a relative 1e-9 for rounding.

    Args:
        kernel: `(kh, kw, c_in, c_out)` kernel of a stride-1 convolution
            (for a strided BCOP map, its downsampled kernel:
            `downsampled_kernel_from_strided`).

    Returns:
        A Python float >= the operator norm of the convolution on any input
        size with circular or zero padding.
    """
    k = np.asarray(tf.cast(kernel, tf.float64))
    kh, kw, c_in, c_out = k.shape
    if c_in > c_out:
        k = np.transpose(k, (0, 1, 3, 2))  # work with the smaller Gram side: K[t]^T K[t + d]
    total = 0.0
    for dh in range(-(kh - 1), kh):
        for dw in range(0, kw) if dh == 0 else range(-(kw - 1), kw):
            a = k[max(0, -dh):kh - max(0, dh), max(0, -dw):kw - max(0, dw)]
            b = k[max(0, dh):kh - max(0, -dh), max(0, dw):kw - max(0, -dw)]
            r = np.einsum("abio,abjo->ij", a, b)
            norm = float(np.linalg.norm(r, 2))
            # R[-d] = R[d]^T has the same norm: count the half-plane d > 0 twice.
            total += norm if (dh, dw) == (0, 0) else 2.0 * norm
    return math.sqrt(total) * (1.0 + _CERTIFICATION_MARGIN)


def fold_kernel(kernel, input_size):
    """The kernel of the same circular convolution on an `input_size` grid, folded to at most that size.

    On an `n`-periodic grid taps `a` and `a + n` act on the same pixel, so
    they add up; the folded kernel (`min(k, n)` taps per axis) gives the same
    map whenever the kernel is larger than the grid (at most the same
    offsets modulo `n`, which do not change singular values).

    Args:
        kernel: `(kh, kw, c_in, c_out)`.
        input_size: `(h, w)`.

    Returns:
        Tensor `(min(kh, h), min(kw, w), c_in, c_out)`.
    """
    for axis, n in enumerate(input_size):
        k = kernel.shape[axis]
        if k > n:
            padded = tf.concat([kernel, tf.zeros_like(_axis_slice(kernel, axis, 0, -k % n))], axis) if k % n else kernel
            shape = [padded.shape[i] for i in range(4)]
            shape[axis : axis + 1] = [padded.shape[axis] // n, n]
            kernel = tf.reduce_sum(tf.reshape(padded, shape), axis=axis)
    return kernel


def circular_conv_norm(kernel, input_size, strides=(1, 1)):
    """The norm of a (strided) convolution with circular padding, certified, in float64.

    The largest singular value of the polyphase frequency blocks
    (Sedghi et al. 2019; `tflip.ops.conv.circular_conv_singular_values` for
    the whole spectrum) by a float64 SVD, raised by a relative 1e-9 for
    rounding.

    Args:
        kernel: `(kh, kw, c_in, c_out)`.
        input_size: `(h, w)`, divisible by the strides (kernels larger than
            the grid are folded: `fold_kernel`).
        strides: `(s_h, s_w)`.

    Returns:
        A Python float.
    """
    h, w = input_size
    if h % strides[0] or w % strides[1]:
        raise ValueError(f"`input_size` {tuple(input_size)} must be divisible by `strides` {tuple(strides)}.")
    kernel = fold_kernel(tf.cast(kernel, tf.float64), input_size)
    blocks = _polyphase_frequency_blocks(kernel, (h, w), tuple(strides), (0, 0))
    values = tf.linalg.svd(blocks, compute_uv=False)
    return float(tf.reduce_max(values)) * (1.0 + _CERTIFICATION_MARGIN)
