"""Penalties on the maximum input-gradient norm (Zhou et al. 2019): MaxGP and MaxAL."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip._replica import cross_replica_max
from tflip.penalties.base import GradientNormPenalty, LastValue, apply_lazily


@keras.saving.register_keras_serializable(package="tflip")
class MaxGradientPenalty(GradientNormPenalty):
    """Max gradient penalty, MaxGP (Zhou et al. 2019, eq. 12).

    `weight * (max_x ||grad f(x)||_* - 1)^2` where the maximum runs over the
    penalty points of the batch (interpolates by default): only the largest
    slope is constrained, which removes the superfluous constraints GP and LP
    put on every sampled point (Zhou section 3). The paper writes the term as
    `rho / 2 * (...)^2`; here `weight = rho / 2`.

    Under a distribution strategy the maximum is taken over the global batch
    (all replicas), so the result equals the single-device penalty (without a
    buffer: the buffer is updated from the first replica's points).

    Args:
        weight: the penalty coefficient.
        one_sided: penalize `max(0, max_norm - 1)^2` instead (the paper notes
            that this rarely matters for the maximum).
        buffer_size: if > 0, keep a historical buffer of the `buffer_size`
            points with the largest gradient norms seen so far (Zhou section
            4.1); the maximum then also runs over the buffer, whose norms are
            re-evaluated at every step. The paper found the buffer usually
            unnecessary. Under a distribution strategy the buffer is shared
            and updated from the first replica's points.
        **kwargs: `sampling`, `noise_std`, `norm`, `interval`, `seed`: see `GradientNormPenalty`.

    Example:

        >>> penalty = MaxGradientPenalty(weight=10.0)
    """

    def __init__(self, weight=10.0, one_sided=False, buffer_size=0, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.one_sided = bool(one_sided)
        self.buffer_size = _validation.non_negative_int("buffer_size", buffer_size)

    def build(self, input_shape):
        super().build(input_shape)
        if self.buffer_size:
            sample_shape = tuple(input_shape[1:])
            self.buffer = self.add_weight(
                shape=(self.buffer_size,) + sample_shape, initializer="zeros", trainable=False,
                name="buffer", aggregation="only_first_replica",
            )
            # 1 where the buffer holds a visited point, 0 for the initial zeros.
            self.buffer_valid = self.add_weight(
                shape=(self.buffer_size,), initializer="zeros", trainable=False,
                name="buffer_valid", aggregation="only_first_replica",
            )

    def batch_maximum(self, critic, real, fake, stream):
        """The differentiable maximum gradient norm over the penalty points (and buffer)."""
        points = self.penalty_points(real, fake, stream)
        if not self.buffer_size:
            norms = self.gradient_norms(critic, points)
            maximum = cross_replica_max(norms)
            # One chain of collectives per step: reuse the global maximum.
            self.record(norms, maximum=maximum)
            return maximum
        count = tf.shape(points)[0]
        candidates = tf.concat([points, tf.cast(self.buffer, points.dtype)], axis=0)
        norms = self.gradient_norms(critic, candidates)
        valid = tf.concat([tf.ones([count]), tf.cast(self.buffer_valid, "float32")], axis=0)
        masked = tf.where(valid > 0, norms, tf.zeros_like(norms))
        keep = tf.math.top_k(tf.stop_gradient(masked), k=self.buffer_size).indices
        self.buffer.assign(tf.stop_gradient(tf.gather(candidates, keep)))
        self.buffer_valid.assign(tf.gather(valid, keep))
        maximum = cross_replica_max(masked)
        fresh = norms[:count]
        # The batch statistics describe the fresh points only; their maximum
        # comes after the penalty's collectives (one chain per step).
        with tf.control_dependencies([maximum]):
            self.record(fresh)
        return maximum

    def compute(self, critic, real, fake, stream, values=None):
        if self.interval > 1 and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # The penalty is the maximum over all replicas' points: a collective,
            # which TensorFlow cannot run inside the lazy tf.cond of a replica.
            raise ValueError(
                f"`interval`={self.interval} (lazy regularization) is not supported by {type(self).__name__} "
                "under a distribution strategy with several replicas: its penalty is the maximum gradient "
                "norm over all replicas. Use interval=1."
            )
        return apply_lazily(self.calls, self.interval, lambda: (self.evaluate(critic, real, fake, stream),))[0]

    def evaluate(self, critic, real, fake, stream):
        violation = self.batch_maximum(critic, real, fake, stream) - 1.0
        if self.one_sided:
            violation = tf.nn.relu(violation)
        return self.weight * tf.square(violation)

    def get_config(self):
        config = super().get_config()
        config.update(one_sided=self.one_sided, buffer_size=self.buffer_size)
        return config


@keras.saving.register_keras_serializable(package="tflip")
class MaxGradientAugmentedLagrangian(MaxGradientPenalty):
    """Augmented Lagrangian on the max gradient norm, MaxAL (Zhou et al. 2019, eq. 13-14).

    With `c = max_x ||grad f(x)||_* - 1` over the penalty points of the batch,
    the critic loss gets `rho * c^2 + lambda * c`, and after every critic
    update the multiplier takes a dual ascent step `lambda <- lambda +
    multiplier_lr * c` (lambda starts at 0 and is a saved, non-trainable
    weight shared by all replicas).

    Sign convention: tflip's critics *minimize* their loss, whereas the paper
    writes the critic objective as a maximization with `+lambda c - rho/2 c^2`
    and the update `lambda <- lambda - rho c` (eq. 14). Our `lambda` is the
    paper's `-lambda` and our `rho` is the paper's `rho / 2`. With this
    convention and the Wasserstein loss, a converged multiplier equals the
    Wasserstein-1 distance between real and fake distributions (the
    stationarity condition of `-k W1 + rho (k-1)^2 + lambda (k-1)` at k = 1;
    Zhou figure 4b).

    The paper's update uses the step `rho`; the authors' code uses a small
    separate step (1e-3), which is the default `multiplier_lr` here.

    Args:
        rho: the quadratic coefficient (>= 0).
        multiplier_lr: the step size of the multiplier update (> 0).
        **kwargs: `buffer_size`, `sampling`, `noise_std`, `norm`, `seed`: see `MaxGradientPenalty`.

    Example:

        >>> penalty = MaxGradientAugmentedLagrangian(rho=10.0, multiplier_lr=1e-3)
        >>> # after training on a converged critic: float(penalty.multiplier) ~ W1
    """

    def __init__(self, rho=10.0, multiplier_lr=1e-3, **kwargs):
        for name in ("weight", "one_sided"):
            if name in kwargs:
                raise ValueError(
                    f"`{name}` is not an argument of MaxGradientAugmentedLagrangian: the quadratic "
                    "coefficient is `rho` and the constraint is two-sided (an equality)."
                )
        if kwargs.get("interval", 1) != 1:
            raise ValueError(
                "`interval` must be 1 for MaxGradientAugmentedLagrangian: the multiplier "
                f"step needs the constraint at every critic step, got {kwargs['interval']!r}."
            )
        self.rho = _validation.non_negative_number("rho", rho)
        super().__init__(weight=self.rho, **kwargs)
        self.multiplier_lr = _validation.positive_number("multiplier_lr", multiplier_lr)
        self.multiplier_metric = LastValue(name="multiplier")
        self.constraint_metric = keras.metrics.Mean(name="constraint")

    def build(self, input_shape):
        super().build(input_shape)
        self.multiplier = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="multiplier",
            aggregation="only_first_replica",
        )
        # The constraint value of the last critic step, used by the multiplier step.
        self.constraint = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="constraint",
            aggregation="only_first_replica",
        )

    def evaluate(self, critic, real, fake, stream):
        constraint = self.batch_maximum(critic, real, fake, stream) - 1.0
        self.constraint.assign(tf.stop_gradient(constraint))
        self.constraint_metric.update_state(constraint)
        multiplier = tf.stop_gradient(tf.convert_to_tensor(self.multiplier))
        return self.rho * tf.square(constraint) + multiplier * constraint

    def after_critic_update(self, critic):
        self.multiplier.assign_add(self.multiplier_lr * self.constraint)
        self.multiplier_metric.update_state(self.multiplier)

    def get_config(self):
        config = super().get_config()
        for key in ("weight", "one_sided"):
            config.pop(key)
        config.update(rho=self.rho, multiplier_lr=self.multiplier_lr)
        return config


MaxGP = MaxGradientPenalty
MaxAL = MaxGradientAugmentedLagrangian
