"""Weight clipping, the original WGAN's Lipschitz heuristic (Arjovsky et al. 2017)."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.penalties.base import Penalty


@keras.saving.register_keras_serializable(package="tflip")
class WeightClipping(Penalty):
    """Clips every trainable critic weight to `[-clip, clip]` after each critic update.

    The baseline of Arjovsky et al. (2017, algorithm 1, c = 0.01). It adds
    nothing to the loss (`penalty(...)` returns 0) and bounds the Lipschitz
    constant only loosely; provided for comparisons.

    Args:
        clip: the clipping threshold c (> 0).

    Example:

        >>> penalty = WeightClipping(clip=0.01)
    """

    def __init__(self, clip=0.01, **kwargs):
        super().__init__(**kwargs)
        self.clip = _validation.positive_number("clip", clip)

    def compute(self, critic, real, fake, stream, values=None):
        return tf.constant(0.0)

    def after_critic_update(self, critic):
        for variable in critic.trainable_variables:
            variable.assign(tf.clip_by_value(variable, -self.clip, self.clip))

    def get_config(self):
        config = super().get_config()
        config.update(clip=self.clip)
        return config
