"""A critic as a function of its input: per-sample values and input gradients.

Penalties, models and callbacks read a critic through these helpers, so that
"one value per sample, in float32" and "the gradient of that value with
respect to the sample" mean the same thing everywhere. This module depends on
TensorFlow and Keras only (no other tflip module), so every layer of the
package can import it.
"""

import keras
import tensorflow as tf


def critic_values(critic, x, training=True):
    """Critic outputs on `x` as a float32 vector of per-sample values.

    Args:
        critic: a Keras model with one output value per sample (output shape
            `(batch,)`, `(batch, 1)`, `(batch, 1, 1)`, ...).
        x: a batch of inputs.
        training: passed to the critic.

    Returns:
        float32 tensor `(batch,)`.

    Raises:
        ValueError: if the critic outputs more than one value per sample.
    """
    out = keras.ops.cast(critic(x, training=training), "float32")
    if out.shape.rank is not None and out.shape.rank > 1 and any(d not in (1, None) for d in out.shape[1:]):
        raise ValueError(f"The critic must output one value per sample, got output shape {tuple(out.shape)}.")
    return tf.reshape(out, [-1])


def values_and_input_gradients(critic, x, training=True):
    """Per-sample critic values and their gradients with respect to the inputs.

    The gradient of the batch sum of the values is each sample's own input
    gradient when the critic treats the samples of a batch independently (see
    `tflip.penalties.base.batch_coupling_layers` for when it does not). Both
    results are recorded by any enclosing tape, so a penalty built on the
    gradients is differentiable with respect to the critic's weights.

    Args:
        critic: a Keras model with one output value per sample.
        x: a batch of inputs.
        training: passed to the critic.

    Returns:
        `(values, gradients)`: float32 tensors of shapes `(batch,)` and `x.shape`.
    """
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        values = critic_values(critic, x, training=training)
        total = tf.reduce_sum(values)
    return values, tf.cast(tape.gradient(total, x), "float32")


def input_gradients(critic, x, training=True):
    """Gradients of the critic's per-sample values with respect to its inputs (float32, shape of `x`).

    See `values_and_input_gradients`.
    """
    return values_and_input_gradients(critic, x, training=training)[1]
