"""SDP-based Lipschitz residual maps (SLL): y = x - 2 W T^-1 ReLU(W^T x + b).

Araujo, Havens, Delattre, Allauzen and Hu, "A Unified Algebraic Perspective
on Lipschitz Neural Networks" (ICLR 2023), theorem 3 and eq. (8): for any W
and any diagonal T with W^T W <= T (Loewner order), the residual map
h(x) = x - 2 W T^-1 sigma(W^T x + b) is 1-Lipschitz for sigma = ReLU (any
activation with slopes in [0, 1]). The Schur test gives such a T for any W
and any q > 0:

    T_ii = sum_j |W^T W|_ij q_j / q_i

(`tflip.ops.aol.aol_row_sums` on the inner side of W). For a convolution, W^T
is the convolution from the input to the inner channels and W its adjoint (the
transposed convolution); `|W^T W|` is replaced by the sum over spatial offsets
of the absolute autocorrelation of the kernel over its inner channels, which
bounds the zero-padded operator on any input size (as for AOL).

ReLU is positively homogeneous, so with V = W T^(-1/2) (the kernel whose inner
channels are rescaled by T^(-1/2)) and b' = T^(-1/2) b,

    h(x) = x - 2 V ReLU(V^T x + b'),

the form computed here: one normalized kernel serves both products (and is
what a layer caches at inference), and ||V|| <= 1 is the SDP condition itself.

Layouts: dense kernels are `(d, inner)` (V^T x = x @ V), conv kernels
`(kh, kw, c, inner)` (V^T x = conv2d(x, V), "same" padding, stride 1).
"""

import tensorflow as tf

from tflip.ops.aol import aol_rescale


def _swap_channels(kernel):
    return tf.transpose(kernel) if len(kernel.shape) == 2 else tf.transpose(kernel, (0, 1, 3, 2))


def sll_normalized_kernel(kernel, log_q=None):
    """V = W T^(-1/2): the kernel with its inner channels rescaled (Araujo et al. 2023, theorem 3).

    Args:
        kernel: `(d, inner)` or `(kh, kw, c, inner)` tensor (W, read as the map V^T).
        log_q: optional `(inner,)` Schur-test weights, q = exp(log_q); `None`: q = 1.

    Returns:
        A tensor of the kernel's shape with `V V^T <= I` (a map of norm at most 1).
    """
    # T is the AOL sum of the inner-side Gram matrix: the AOL rescaling of the kernel with its channels swapped.
    return _swap_channels(aol_rescale(_swap_channels(kernel), log_q))


def _times_minus_two(kernel):
    # Scaling the small kernel instead of the output saves an elementwise pass over the activations (and its
    # gradient); a factor -2 is exact in floating point, so the result is the same.
    return -2.0 * kernel


def sll_dense_residual(x, kernel, bias=None):
    """`x - 2 V ReLU(V^T x + b)` for a dense normalized kernel `(d, inner)` (from `sll_normalized_kernel`)."""
    inner = tf.matmul(x, kernel)
    if bias is not None:
        inner = inner + bias
    return x + tf.matmul(tf.nn.relu(inner), _times_minus_two(kernel), transpose_b=True)


def sll_conv_residual(x, kernel, bias=None):
    """`x - 2 V ReLU(V^T x + b)` for a conv normalized kernel `(kh, kw, c, inner)`, "same" padding, stride 1.

    V is the transposed convolution, the exact adjoint of the forward
    "same" convolution for every kernel size (even sizes pad asymmetrically,
    so a flipped-kernel convolution would not be the adjoint).
    """
    inner = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    if bias is not None:
        inner = inner + bias
    back = tf.nn.conv2d_transpose(tf.nn.relu(inner), _times_minus_two(kernel), tf.shape(x), strides=1, padding="SAME")
    return x + back
