"""Norm-preserving reshapings of images: invertible downsampling (space-to-depth) and its inverse.

Invertible downsampling (Jacobsen, Smeulders, Oyallon, "i-RevNet", ICLR
2018, sec. 3.1) moves each non-overlapping `p_h x p_w` spatial window into the
channels. It only permutes the entries of the input, so it is orthogonal:
every singular value is 1, in any p-norm it preserves norms, and its
inverse is its transpose (`invertible_upsample`). Orthogonal strided
convolutions (Li et al. 2019 sec. 4; Trockman and Kolter 2021) are built as
an orthogonal stride-1 convolution applied after it.
"""

import tensorflow as tf


def invertible_downsample(x, pool_size):
    """Space-to-depth: `(b, h, w, c) -> (b, h / p_h, w / p_w, p_h * p_w * c)`.

    Output channel `(i * p_w + j) * c + k` at position `(y, x)` holds input
    `(y * p_h + i, x * p_w + j, k)`: the ordering of `tf.nn.space_to_depth`
    for square windows, here for any `(p_h, p_w)`.

    Args:
        x: Tensor `(batch, h, w, c)`, channels last, `h` divisible by `p_h`
            and `w` by `p_w`.
        pool_size: `(p_h, p_w)` pair of positive ints.

    Returns:
        Tensor `(batch, h // p_h, w // p_w, p_h * p_w * c)` with the same
        entries as `x`.
    """
    ph, pw = pool_size
    if ph == pw == 1:
        return x
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or c is None:
        dynamic = tf.shape(x)
        h = dynamic[1] if h is None else h
        w = dynamic[2] if w is None else w
        c = dynamic[3] if c is None else c
    blocks = tf.reshape(x, tf.stack([-1, h // ph, ph, w // pw, pw, c]))
    blocks = tf.transpose(blocks, (0, 1, 3, 2, 4, 5))
    return tf.reshape(blocks, tf.stack([-1, h // ph, w // pw, ph * pw * c]))


def invertible_upsample(x, pool_size):
    """Depth-to-space, the inverse (and transpose) of `invertible_downsample`.

    Args:
        x: Tensor `(batch, h, w, p_h * p_w * c)`.
        pool_size: `(p_h, p_w)`.

    Returns:
        Tensor `(batch, h * p_h, w * p_w, c)`.
    """
    ph, pw = pool_size
    if ph == pw == 1:
        return x
    h, w, depth = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or depth is None:
        dynamic = tf.shape(x)
        h = dynamic[1] if h is None else h
        w = dynamic[2] if w is None else w
        depth = dynamic[3] if depth is None else depth
    blocks = tf.reshape(x, tf.stack([-1, h, w, ph, pw, depth // (ph * pw)]))
    blocks = tf.transpose(blocks, (0, 1, 3, 2, 4, 5))
    return tf.reshape(blocks, tf.stack([-1, h * ph, w * pw, depth // (ph * pw)]))
