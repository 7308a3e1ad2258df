"""One critic update, shared by `WGAN` and `WassersteinCritic`."""

import keras
import tensorflow as tf

from tflip._replica import scale_loss_for_replicas
from tflip.penalties.base import critic_values


class CriticMetrics:
    """The Mean trackers every critic-training model logs."""

    def __init__(self):
        self.critic_loss = keras.metrics.Mean(name="critic_loss")
        self.wasserstein = keras.metrics.Mean(name="wasserstein")
        self.penalty = keras.metrics.Mean(name="penalty")

    def as_list(self):
        return [self.critic_loss, self.wasserstein, self.penalty]


def optimizer_loss(optimizer, loss):
    """The loss to differentiate for one replica: mean loss / replicas, loss-scaled.

    Keras sums gradients over replicas, hence the division; under mixed
    precision the `LossScaleOptimizer` scales here and unscales in `apply`.
    Call it inside the gradient tape.
    """
    return optimizer.scale_loss(scale_loss_for_replicas(loss))


def critic_update(critic, optimizer, penalty, critic_loss_fn, real, fake, metrics):
    """One optimizer step of the critic on a real and a fake batch.

    Minimizes `critic_loss_fn(f(real), f(fake)) + penalty(critic, real, fake)`,
    runs the penalty's post-update hook, and records the unscaled loss, the
    penalty and the Wasserstein estimate `mean f(real) - mean f(fake)`.
    """
    variables = critic.trainable_variables
    with tf.GradientTape() as tape:
        real_values = critic_values(critic, real)
        fake_values = critic_values(critic, fake)
        loss = critic_loss_fn(real_values, fake_values)
        penalty_value = penalty(critic, real, fake) if penalty is not None else tf.constant(0.0)
        total = loss + penalty_value
        scaled = optimizer_loss(optimizer, total)
    optimizer.apply(tape.gradient(scaled, variables), variables)
    if penalty is not None:
        penalty.after_critic_update(critic)
    metrics.critic_loss.update_state(total)
    metrics.penalty.update_state(penalty_value)
    metrics.wasserstein.update_state(tf.reduce_mean(real_values) - tf.reduce_mean(fake_values))
