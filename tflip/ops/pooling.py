"""L2-norm pooling: the Euclidean norm of each non-overlapping window, with a safe gradient at zero."""

import tensorflow as tf


def l2_norm_pool(x, pool_size):
    """The L2 norm of each non-overlapping `p_h x p_w` window, per channel.

    `y[b, i, j, c] = sqrt(sum_{a < p_h, d < p_w} x[b, i p_h + a, j p_w + d, c]^2)`
    (Anil, Lucas, Grosse, ICML 2019, sec. 6: norm pooling keeps
    gradient-norm-preserving networks expressive). Rows and columns beyond the
    last whole window are dropped (Keras' "valid" pooling).

    Each window is scaled by its largest entry before squaring, so that
    neither the squares of small inputs underflow nor those of large inputs
    overflow (float16 included): `y = m sqrt(sum (x / m)^2)` with
    `m = max |x|` held constant under differentiation, which is exact because
    the expression does not depend on `m`. The gradient is then `x / y`
    (a unit vector: the map is 1-Lipschitz and gradient-norm preserving) and,
    for an all-zero window, 0 (a subgradient; `sqrt` at 0 has no derivative),
    never NaN, to any order of differentiation.

    Args:
        x: Tensor `(batch, h, w, c)`, channels last.
        pool_size: `(p_h, p_w)` pair of positive ints.

    Returns:
        Tensor `(batch, h // p_h, w // p_w, c)` in the dtype of `x`
        (computed in float32).
    """
    ph, pw = pool_size
    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    dynamic = tf.shape(x)
    h = dynamic[1] if h is None else h
    w = dynamic[2] if w is None else w
    c = dynamic[3] if c is None else c
    x = x[:, : (h // ph) * ph, : (w // pw) * pw, :]
    windows = tf.reshape(x, tf.stack([-1, h // ph, ph, w // pw, pw, c]))
    # One row per window: low-rank tensors keep the broadcasts below within what `pfor`
    # (batch Jacobians) supports.
    windows = tf.reshape(tf.transpose(windows, (0, 1, 3, 5, 2, 4)), (-1, ph * pw))
    largest = tf.stop_gradient(tf.reduce_max(tf.abs(windows), axis=1, keepdims=True))
    nonzero = largest > 0
    scale = tf.where(nonzero, largest, tf.ones_like(largest))
    squares = tf.reduce_sum(tf.square(windows / scale), axis=1, keepdims=True)
    # `squares` >= 1 in a nonzero window; the inner `where` keeps sqrt away from 0.
    norms = tf.where(nonzero, scale * tf.sqrt(tf.where(nonzero, squares, tf.ones_like(squares))), 0.0)
    norms = tf.reshape(norms, tf.stack([-1, h // ph, w // pw, c]))
    return tf.cast(norms, dtype)
