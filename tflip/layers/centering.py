"""LayerCentering: subtracts each sample's per-channel spatial mean (an orthogonal projection)."""

import keras
import tensorflow as tf

from tflip.layers.base import LipschitzLayer
from tflip.ops.norms import check_norm


@keras.saving.register_keras_serializable(package="tflip")
class LayerCentering(keras.layers.Layer, LipschitzLayer):
    """Subtracts, for each sample and channel, the mean over the spatial positions.

    `y[b, ..., c] = x[b, ..., c] - mean_{positions p} x[b, p, c]`, the
    normalization that Lipschitz networks use instead of batch normalization
    (Serrurier et al., CVPR 2021, deel-lip's `LayerCentering`; centering
    without the division by a standard deviation, which is not Lipschitz).
    Per channel it is `I - 1 1^T / n` on the `n` spatial positions: an
    orthogonal projection (singular values 1, and 0 on the constant
    images), hence 1-Lipschitz in L2. Being linear and the same for every
    sample, it is also independent of the batch (unlike batch centering)
    and identical in training and inference.

    An optional learnable per-channel bias is added after centering (a
    translation: no effect on the Lipschitz constant).

    Args:
        use_bias: Whether to add a learnable per-channel bias.
        bias_initializer: Its initializer.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor `(batch, *spatial, c)` with at least one spatial axis
            (rank >= 3, channels last).

    Returns:
        Tensor of the shape of `inputs`.

    Example:
        >>> y = LayerCentering()(tf.random.normal((2, 8, 8, 3)))  # mean over (1, 2) is 0
    """

    def __init__(self, use_bias=False, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.use_bias = bool(use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=3)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"The channel dimension of the inputs must be defined, got {input_shape}.")
        self.spatial_axes = tuple(range(1, len(input_shape) - 1))
        spatial = input_shape[1:-1]
        self.positions = None if None in spatial else int(tf.reduce_prod(spatial))
        self.bias = (
            self.add_weight(name="bias", shape=(input_shape[-1],), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, inputs):
        # The mean is accumulated in float32 (a float16 sum over many positions loses digits).
        mean = tf.reduce_mean(tf.cast(inputs, tf.float32), axis=self.spatial_axes, keepdims=True)
        outputs = inputs - tf.cast(mean, inputs.dtype)
        return outputs + self.bias if self.bias is not None else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def operator_norm(self):
        """1: the norm of a nonzero orthogonal projection."""
        return tf.constant(1.0, tf.float32)

    def lipschitz_upper_bound(self, norm=2):
        """1 in L2; in L-infinity the largest row sum of `|I - 1 1^T / n|`, `2 (n - 1) / n` (2 if `n` is unknown)."""
        if check_norm(norm) == 2:
            return 1.0
        return 2.0 if self.positions is None else 2.0 * (self.positions - 1) / self.positions

    def get_config(self):
        return {
            **super().get_config(),
            "use_bias": self.use_bias,
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
