"""L2NormPooling2D: the Euclidean norm of each non-overlapping window (1-Lipschitz, gradient-norm preserving)."""

import math

import keras
import tensorflow as tf

from tflip import _validation
from tflip.layers.base import LipschitzLayer
from tflip.ops.norms import check_norm
from tflip.ops.pooling import l2_norm_pool


@keras.saving.register_keras_serializable(package="tflip")
class L2NormPooling2D(keras.layers.Layer, LipschitzLayer):
    """Pooling by the L2 norm of each non-overlapping window, per channel.

    `y[i, j, c] = ||x[i p_h : (i + 1) p_h, j p_w : (j + 1) p_w, c]||_2`
    (Anil, Lucas, Grosse, "Sorting out Lipschitz function approximation",
    ICML 2019, sec. 6; the norm pooling of deel-lip and orthogonium). The
    windows are disjoint, so the map is 1-Lipschitz in L2 (by the triangle
    inequality in each window, then summing squares) and its Jacobian has
    orthonormal rows `x_w / ||x_w||`: it is gradient-norm preserving
    wherever no window is zero, unlike max pooling (which is 1-Lipschitz but
    discards gradient norm) and average pooling (contractive by
    `1 / sqrt(p_h p_w)`).

    At an all-zero window the norm has no derivative; the layer uses the
    subgradient 0 there (never NaN; see `tflip.ops.pooling.l2_norm_pool` for
    the overflow- and underflow-safe formulation). Strides equal the pool
    size; rows and columns beyond the last whole window are dropped, as in
    Keras' "valid" pooling.

    Args:
        pool_size: Int or pair `(p_h, p_w)`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor `(batch, h, w, c)` (channels last).

    Returns:
        Tensor `(batch, h // p_h, w // p_w, c)`.

    Example:
        >>> pool = L2NormPooling2D(2)
        >>> pool(tf.ones((1, 4, 4, 3)))[0, 0, 0]  # [2., 2., 2.]
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _validation.int_pair("pool_size", pool_size)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        return l2_norm_pool(inputs, self.pool_size)

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        out = [None if n is None else n // p for n, p in zip((h, w), self.pool_size)]
        return (batch, *out, c)

    def operator_norm(self):
        """1: the largest Jacobian norm (reached at every input without a zero window)."""
        return tf.constant(1.0, tf.float32)

    def lipschitz_upper_bound(self, norm=2):
        """1 in L2; `sqrt(p_h p_w)` in L-infinity (a window's L2 norm is at most that times its largest entry)."""
        return 1.0 if check_norm(norm) == 2 else math.sqrt(self.pool_size[0] * self.pool_size[1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}
