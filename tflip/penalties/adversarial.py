"""Adversarial Lipschitz penalty, ALP (Terjek 2020)."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip._replica import global_statistics, safe_mean
from tflip.gradients import critic_values
from tflip.penalties.base import Penalty, vector_norms, warn_if_batch_coupled

_FORMS = ("one_sided", "two_sided", "absolute_and_square")


def _unit_rows(vectors):
    """Each row scaled to unit L2 norm (rows of zeros stay zero)."""
    norms = vector_norms(vectors, 2.0)
    shape = tf.concat([tf.shape(vectors)[:1], tf.ones([vectors.shape.rank - 1], tf.int32)], 0)
    return vectors / tf.reshape(tf.maximum(norms, 1e-12), shape)


@keras.saving.register_keras_serializable(package="tflip")
class AdversarialLipschitzPenalty(Penalty):
    """Adversarial Lipschitz penalty, ALP (Terjek 2020, eq. 15-18).

    For every real and fake sample `x` (both batches, as in the paper), finds
    the approximately adversarial perturbation `r_adv` of the Lipschitz
    quotient by `power_iterations` finite-difference power-iteration steps
    from a random unit direction (eq. 16): `d <- normalize(grad_r |f(x) -
    f(x + r)|)` at `r = xi * d`; then `r_adv = epsilon * d` with `epsilon ~
    U[epsilon_low, epsilon_high]` drawn per sample. The penalty is

        weight * mean(max(0, |f(x) - f(x + r_adv)| / ||r_adv||_2 - K)^2)

    (eq. 15, 17), differentiated through both `f(x)` and `f(x + r_adv)` with
    `r_adv` held constant (the paper: "minimize (15) without keeping f(x)
    fixed").

    Tune it by the number of pairs that violate the constraint (Terjek
    section 3.2; logged as `violations` per critic batch and
    `violation_rate`): keep it well away from both 0 and the batch size. Too
    many: increase `weight` or `target`; too few: decrease `weight`, decrease
    `target`, adjust `epsilon` or add power iterations.
    `lipschitz_quotient_max` logs the epoch mean of the per-step maximum.

    Args:
        weight: lambda (the paper uses 100 for the CIFAR-10 WGAN with the
            squared form, 0.1 with `"absolute_and_square"` on CelebA-HQ).
        xi: finite-difference step of the power iteration (10).
        epsilon: `(low, high)` range of the per-sample perturbation length
            (`(0.1, 10.0)`).
        power_iterations: steps of the power iteration (>= 0; 1 in the paper,
            0 uses the random direction).
        target: the Lipschitz constant K (1).
        form: `"one_sided"` (eq. 17, default), `"two_sided"`
            (`(quotient - K)^2`, eq. 19) or `"absolute_and_square"` (`v + v^2`
            with `v = max(0, quotient - K)`, eq. 20).
        clip: optional `(low, high)` data range: the perturbed samples
            `x + r_adv` are clipped to it (and the pair distance is measured
            after clipping); the power iteration's probes are not clipped.
        seed: seed of the random directions and lengths.

    Example:

        >>> penalty = AdversarialLipschitzPenalty(weight=100.0, epsilon=(0.1, 10.0))
    """

    def __init__(
        self,
        weight=100.0,
        xi=10.0,
        epsilon=(0.1, 10.0),
        power_iterations=1,
        target=1.0,
        form="one_sided",
        clip=None,
        seed=0,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.weight = _validation.non_negative_number("weight", weight)
        self.xi = _validation.positive_number("xi", xi)
        self.epsilon = _validation.interval("epsilon", epsilon, positive=True)
        self.power_iterations = _validation.non_negative_int("power_iterations", power_iterations)
        self.target = _validation.non_negative_number("target", target)
        self.form = _validation.one_of("form", form, _FORMS)
        self.clip = None if clip is None else _validation.interval("clip", clip)
        self.violation_rate = keras.metrics.Mean(name="violation_rate")
        self.violations = keras.metrics.Mean(name="violations")
        self.quotient_mean = keras.metrics.Mean(name="lipschitz_quotient_mean")
        self.quotient_max = keras.metrics.Mean(name="lipschitz_quotient_max")

    def _perturb(self, x, r):
        moved = x + r
        if self.clip is not None:
            moved = tf.clip_by_value(moved, *self.clip)
        return moved

    def adversarial_direction(self, critic, x, values, start):
        """Unit directions approximately maximizing the Lipschitz quotient (eq. 16).

        Args:
            critic: the critic f.
            x: the samples.
            values: `f(x)` as a vector.
            start: the random start directions.
        """
        direction = _unit_rows(start)
        for _ in range(self.power_iterations):
            probe = self.xi * direction
            with tf.GradientTape() as tape:
                tape.watch(probe)
                # Not clipped: the probe only estimates a direction, and clipping
                # would zero its gradient wherever x + xi d leaves the data range.
                gap = tf.reduce_sum(tf.abs(tf.stop_gradient(values) - critic_values(critic, x + probe)))
            gradient = tf.stop_gradient(tape.gradient(gap, probe))
            # Keep the previous direction where the critic is flat (zero gradient).
            flat = tf.reshape(vector_norms(gradient, 2.0) == 0.0, [-1] + [1] * (x.shape.rank - 1))
            direction = tf.where(flat, direction, _unit_rows(gradient))
        return direction

    def compute(self, critic, real, fake, stream, values=None):
        warn_if_batch_coupled(critic, type(self).__name__)
        x = tf.concat([tf.cast(real, "float32"), tf.cast(fake, "float32")], axis=0)
        values = critic_values(critic, x) if values is None else tf.concat(values, axis=0)
        # Draws per batch (real, fake) so each replica's rows match the single-device rows.
        start = tf.concat([stream.normal(tf.shape(part)) for part in (real, fake)], 0)
        direction = self.adversarial_direction(critic, x, values, start)
        count = tf.shape(x)[0]
        epsilon = tf.concat([stream.uniform(tf.shape(part)[:1], *self.epsilon) for part in (real, fake)], 0)
        shape = tf.concat([[count], tf.ones([x.shape.rank - 1], tf.int32)], 0)
        moved = tf.stop_gradient(self._perturb(x, tf.reshape(epsilon, shape) * direction))
        distance = tf.maximum(vector_norms(moved - x, 2.0), 1e-12)
        quotient = tf.abs(values - critic_values(critic, moved)) / distance
        violation = tf.nn.relu(quotient - self.target)
        if self.form == "one_sided":
            penalty = tf.square(violation)
        elif self.form == "two_sided":
            penalty = tf.square(quotient - self.target)
        else:
            penalty = violation + tf.square(violation)
        violated = tf.cast(quotient > self.target, "float32")
        self.violation_rate.update_state(violated)
        # Counts and maxima over the global batch, as on a single device.
        (count,), (largest,) = global_statistics(sums=[tf.reduce_sum(violated)], maxima=[quotient])
        self.violations.update_state(count)
        self.quotient_mean.update_state(quotient)
        self.quotient_max.update_state(largest)
        return self.weight * safe_mean(penalty)

    def get_config(self):
        config = super().get_config()
        config.update(
            weight=self.weight,
            xi=self.xi,
            epsilon=self.epsilon,
            power_iterations=self.power_iterations,
            target=self.target,
            form=self.form,
            clip=self.clip,
        )
        return config


ALP = AdversarialLipschitzPenalty
