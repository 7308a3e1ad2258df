"""InvertibleDownSampling: space-to-depth, an orthogonal (permutation) downsampling."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.layers.base import LipschitzLayer
from tflip.ops.norms import check_norm
from tflip.ops.reshaping import invertible_downsample


@keras.saving.register_keras_serializable(package="tflip")
class InvertibleDownSampling(keras.layers.Layer, LipschitzLayer):
    """Moves each non-overlapping `p_h x p_w` window into the channels (space-to-depth).

    The invertible downsampling of i-RevNet (Jacobsen, Smeulders, Oyallon,
    ICLR 2018, sec. 3.1), used by orthogonal convolutional networks to
    downsample without losing gradient norm (Li et al., NeurIPS 2019, sec.
    4; Trockman and Kolter, ICLR 2021). It permutes the entries of its
    input, so it is orthogonal: 1-Lipschitz and norm-preserving in L2 and in
    L-infinity, and its inverse is `tflip.ops.reshaping.invertible_upsample`.
    Output channel `(i * p_w + j) * c + k` holds input `(i, j, k)` of each
    window (the order of `tf.nn.space_to_depth`).

    Args:
        pool_size: Int or pair `(p_h, p_w)`; the spatial size of the inputs
            must be divisible by it.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor `(batch, h, w, c)` (channels last).

    Returns:
        Tensor `(batch, h // p_h, w // p_w, p_h * p_w * c)`.

    Example:
        >>> InvertibleDownSampling(2)(tf.zeros((1, 8, 8, 3))).shape  # (1, 4, 4, 12)
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _validation.int_pair("pool_size", pool_size)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        for n, p, axis in zip(input_shape[1:3], self.pool_size, ("height", "width")):
            if n is not None and n % p:
                raise ValueError(
                    f"The input {axis} {n} is not divisible by `pool_size` {self.pool_size} "
                    f"(input shape {tuple(input_shape)})."
                )

    def call(self, inputs):
        return invertible_downsample(inputs, self.pool_size)

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        ph, pw = self.pool_size
        return (batch, None if h is None else h // ph, None if w is None else w // pw,
                None if c is None else c * ph * pw)

    def operator_norm(self):
        """1: a permutation's singular values are all 1."""
        return tf.constant(1.0, tf.float32)

    def lipschitz_upper_bound(self, norm=2):
        check_norm(norm)
        return 1.0

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}
