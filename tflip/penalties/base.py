"""The penalty protocol and the machinery shared by the input-gradient penalties.

A penalty is called as `penalty(critic, real, fake)` inside the caller's
`tf.GradientTape` and returns the weighted scalar penalty of one critic step;
its own diagnostics are Keras metrics (`penalty.metrics`), and
`after_critic_update(critic)` runs after each critic update (MaxAL's multiplier
step, weight clipping). Models treat every penalty alike through this protocol.
"""

import warnings

import keras
import tensorflow as tf

from tflip import _validation
from tflip._random import SeedCounter
from tflip._replica import finite_max, global_statistics
from tflip.gradients import input_gradients
from tflip.layers.base import iter_layers

_SAMPLINGS = ("interpolates", "real_perturbation", "real_fake_perturbation")


class LastValue(keras.metrics.Metric):
    """A metric reporting the last value it was given (state such as a multiplier).

    Stored as a (total, count) = (value, 1) pair so that the sum Keras takes
    over replicas when reading a distributed metric still yields the value.
    """

    def __init__(self, name, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, value):
        self.value.assign(tf.cast(value, self.dtype))
        self.count.assign(1.0)

    def result(self):
        return tf.math.divide_no_nan(self.value, self.count)


class Penalty(keras.layers.Layer):
    """Base class of critic penalties: `penalty(critic, real, fake) -> scalar`.

    A penalty is a Keras layer so that its state (counters, multipliers,
    buffers) and its diagnostic metrics are tracked, saved and restored with
    the model that owns it, and created as mirrored variables under a
    distribution strategy. It is not a layer of the critic's graph: calling it
    bypasses Keras' input handling and runs `compute` directly.

    Subclasses implement `compute(critic, real, fake)` (the weighted penalty,
    float32 scalar, averaged over this replica's samples) and optionally
    `after_critic_update(critic)`; they create state in `build(input_shape)`,
    which the owning model calls with the shape of one real sample batch.

    Args:
        seed: seed of the penalty's random draws (interpolation coefficients,
            perturbations) when it is called without a `seed` (standalone
            use). Draws are a function of this seed and a saved counter, so
            resumed training reproduces an uninterrupted run. Inside `WGAN`
            the model passes a per-step seed derived from its own `seed`.
    """

    def __init__(self, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.seed = _validation.random_seed("seed", seed)

    def build(self, input_shape):
        self.seed_counter = SeedCounter(self, self.seed, name="random_counter")
        self.built = True

    def __call__(self, critic, real, fake, seed=None, values=None):
        """Returns the weighted penalty for one critic step (float32 scalar).

        Args:
            critic: the critic model.
            real: a batch of real samples.
            fake: a batch of generated samples.
            seed: optional int64 seed tensor of shape (2,) for this call's
                random draws (models pass one per critic step); by default the
                penalty's own saved counter provides it.
            values: optional `(f(real), f(fake))`, the critic's values the
                caller already computed inside the same tape; penalties that
                need them (ALP) reuse them instead of a second forward pass.
        """
        if not self.built:
            self.build(tuple(real.shape))
        stream = self.seed_counter.stream(seed)
        return self.compute(critic, tf.convert_to_tensor(real), tf.convert_to_tensor(fake), stream, values)

    def compute(self, critic, real, fake, stream, values=None):
        """The penalty; `stream` is the call's `RandomStream` (all its random draws), `values` see `__call__`."""
        raise NotImplementedError

    def after_critic_update(self, critic):
        """Hook run after each critic optimizer step. Default: nothing."""
        return None

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed)
        # The dtype policy of a penalty is irrelevant: it computes in float32.
        config.pop("dtype", None)
        return config


def dual_norm_exponent(norm):
    """The exponent q of the dual norm of `norm` = p (1/p + 1/q = 1)."""
    if norm == "inf":
        return 1.0
    if norm == 1:
        return "inf"
    return norm / (norm - 1.0)


def check_input_norm(norm):
    """Validates the input metric: a number p >= 1 or "inf"."""
    if isinstance(norm, str):
        return _validation.one_of("norm", norm, ("inf",))
    if isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm == float("inf"):
        return "inf"
    norm = _validation.positive_number("norm", norm)
    if norm < 1:
        raise ValueError(f"`norm` must be >= 1 (an Lp metric) or 'inf', got {norm!r}.")
    return norm


def vector_norms(vectors, exponent):
    """Per-row `exponent`-norms of a batch, with a zero gradient at zero.

    `sqrt` has an infinite derivative at 0, which turns a penalty's gradient
    into NaN when a critic has a zero input gradient; the double `where` keeps
    the value exact and the derivative at 0 equal to 0.
    """
    flat = tf.reshape(vectors, [tf.shape(vectors)[0], -1])
    if exponent == "inf":
        return tf.reduce_max(tf.abs(flat), axis=1)
    if exponent == 1.0:
        return tf.reduce_sum(tf.abs(flat), axis=1)
    magnitudes = tf.square(flat) if exponent == 2.0 else tf.abs(flat) ** exponent
    powered = tf.reduce_sum(magnitudes, axis=1)
    positive = powered > 0
    safe = tf.where(positive, powered, tf.ones_like(powered))
    return tf.where(positive, safe ** (1.0 / exponent), tf.zeros_like(powered))


def batch_coupling_layers(critic):
    """Names of the critic's layers that mix the samples of a batch in training mode.

    A trainable `BatchNormalization` normalizes with the batch's statistics,
    so each output depends on every input of the batch (a frozen one uses its
    moving statistics and is per-sample).
    """
    return [
        layer.name for layer in iter_layers(critic)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def warn_if_batch_coupled(critic, penalty_name):
    """Warns that a penalty cannot constrain a critic whose batch-coupling layers mix its samples.

    The input-gradient penalties take the gradient of the batch sum, which
    is each sample's own gradient only for independent samples; ALP compares
    critic values on two different batches (the samples and their perturbed
    copies), each normalized with its own statistics.
    """
    coupled = batch_coupling_layers(critic)
    if coupled:
        warnings.warn(
            f"{penalty_name}: the critic has BatchNormalization layers {coupled} that mix the samples of a batch "
            "in training mode, so the per-sample quantities the penalty constrains (input gradients, or critic "
            "values at perturbed points) depend on the rest of the batch, and the penalty does not bound the "
            "critic's Lipschitz constant (measured: LipschitzPenalty did not change the gradient norms of such a "
            "critic). Use LayerNormalization or no normalization in the critic.",
            UserWarning,
            stacklevel=3,
        )


def add_lazy_counter(penalty, interval):
    """The saved count of a lazily applied penalty's calls, or None when `interval` is 1.

    Lazy regularization (Karras et al. 2020, StyleGAN2, section 3.1) needs to
    know which critic step this is. The count is a non-trainable weight of the
    penalty, so it is saved and resumed with the model; it is updated with
    `only_first_replica` aggregation, so under a distribution strategy every
    replica adds the same 1 and all copies hold the same count: the replicas
    penalize the same steps.
    """
    if interval == 1:
        return None
    return penalty.add_weight(
        shape=(), dtype="int64", initializer="zeros", trainable=False,
        name="calls", aggregation="only_first_replica",
    )


def apply_lazily(calls, interval, evaluate, extras=0):
    """Runs `evaluate` on the 1st, (1 + interval)-th, ... call only; the penalty scaled by `interval`.

    Lazy regularization (StyleGAN2, section 3.1): evaluating the penalty only
    every `interval`-th critic step and multiplying it by `interval` keeps
    its average strength while the other steps skip its cost. The choice is
    a `tf.cond` on the saved count `calls` (`add_lazy_counter`), so the
    skipped steps compute no input gradients, also inside a compiled
    `train_step`; `evaluate` (and the metrics it updates) runs on the
    penalized steps only.

    Under a distribution strategy TensorFlow refuses cross-replica
    collectives (all-reduce, `merge_call`) inside a `tf.cond` of a replica
    function, so `evaluate` must compute per-replica quantities only and the
    caller reduces its extra results afterwards (weighted by `applied`).

    Args:
        calls: the counter from `add_lazy_counter` (None when `interval` is 1).
        interval: the positive int N.
        evaluate: a function returning a tuple of float32 scalars: the
            weighted penalty, then `extras` other results.
        extras: how many results `evaluate` returns after the penalty.

    Returns:
        `(penalty, *extras, applied)`: `interval * penalty` and the extras on
        a penalized call, zeros on the others; `applied` is 1.0 or 0.0.
    """
    if interval == 1:
        return (*evaluate(), tf.constant(1.0))
    count = calls.assign_add(1)

    def penalized():
        penalty, *extras = evaluate()
        return (float(interval) * penalty, *extras, tf.constant(1.0))

    def skipped():
        return tuple(tf.constant(0.0) for _ in range(extras + 2))

    return tf.cond(tf.equal(count % interval, 1 % interval), penalized, skipped)


class GradientNormPenalty(Penalty):
    """Base of the penalties on input-gradient norms at sampled points.

    Handles the sampling of the penalty points (Gulrajani's interpolates or
    Petzka's local perturbations, appendix D.4), the input metric (the norm of
    the gradient is the dual norm of the input metric; Petzka section 5, "a
    more general view"), lazy regularization, and the gradient-norm
    diagnostics. Subclasses implement `penalty_from_norms(norms)`.

    Args:
        weight: the penalty coefficient lambda (>= 0).
        sampling: where the penalty is evaluated: `"interpolates"` (default,
            a*real + (1-a)*fake, a ~ U[0, 1] per sample), `"real_perturbation"`
            (real + N(0, noise_std^2)) or `"real_fake_perturbation"` (both
            real and fake samples perturbed).
        noise_std: standard deviation of the local perturbation.
        norm: the input metric: p >= 1 (2 is the Euclidean default) or
            `"inf"`; the gradient is measured in the dual norm.
        interval: lazy regularization (StyleGAN2): evaluate the penalty only
            every `interval`-th critic step and multiply it by `interval`, so
            the average cost per step approaches the unpenalized step.
            `1` (default) applies it at every step.
        seed: seed of the random draws.
    """

    def __init__(
        self,
        weight=10.0,
        sampling="interpolates",
        noise_std=0.1,
        norm=2,
        interval=1,
        seed=0,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.weight = _validation.non_negative_number("weight", weight)
        self.sampling = _validation.one_of("sampling", sampling, _SAMPLINGS)
        self.noise_std = _validation.non_negative_number("noise_std", noise_std)
        self.norm = check_input_norm(norm)
        self.interval = _validation.positive_int("interval", interval)
        self.gradient_norm_mean = keras.metrics.Mean(name="gradient_norm_mean")
        self.gradient_norm_max = keras.metrics.Mean(name="gradient_norm_max")

    def build(self, input_shape):
        super().build(input_shape)
        self.calls = add_lazy_counter(self, self.interval)

    def penalty_points(self, real, fake, stream):
        """The points at which the gradient norm is penalized."""
        real = tf.cast(real, "float32")
        fake = tf.cast(fake, "float32")
        if self.sampling == "interpolates":
            rank = real.shape.rank
            alpha = stream.uniform(tf.concat([tf.shape(real)[:1], tf.ones([rank - 1], tf.int32)], 0))
            return alpha * real + (1.0 - alpha) * fake
        parts = [real] if self.sampling == "real_perturbation" else [real, fake]
        # One draw per part, so each replica's rows match the single-device rows.
        return tf.concat([part + stream.normal(tf.shape(part), stddev=self.noise_std) for part in parts], 0)

    def penalty_from_norms(self, norms):
        """The unweighted penalty from the per-point gradient norms."""
        raise NotImplementedError

    def compute(self, critic, real, fake, stream, values=None):
        if self.interval == 1:
            return self.evaluate(critic, real, fake, stream)
        penalty, maximum, applied = apply_lazily(
            self.calls, self.interval, lambda: self.evaluate_on_replica(critic, real, fake, stream), extras=1)
        # No collective inside the lazy tf.cond of a replica function: the
        # maximum over replicas is taken here, weighted 0 on skipped steps.
        global_maximum = global_statistics(maxima=[maximum])[1][0]
        self.gradient_norm_max.update_state(tf.stop_gradient(global_maximum), sample_weight=applied)
        return penalty

    def evaluate_on_replica(self, critic, real, fake, stream):
        """`(weighted penalty, this replica's maximum gradient norm)` without cross-replica collectives."""
        norms = self.gradient_norms(critic, self.penalty_points(real, fake, stream))
        self.gradient_norm_mean.update_state(norms)
        return self.weight * self.penalty_from_norms(norms), finite_max(norms)

    def gradient_norms(self, critic, points):
        """Dual norms of the critic's input gradients at `points`."""
        warn_if_batch_coupled(critic, type(self).__name__)
        return vector_norms(input_gradients(critic, points), dual_norm_exponent(self.norm))

    def record(self, norms, maximum=None):
        """Updates the gradient-norm diagnostics with the norms at fresh points.

        `gradient_norm_max` logs the epoch mean of the per-step maximum over
        the global batch (all replicas); pass `maximum` when it is already
        known, to save a cross-replica reduction.
        """
        self.gradient_norm_mean.update_state(norms)
        if maximum is None:
            maximum = global_statistics(maxima=[norms])[1][0]
        self.gradient_norm_max.update_state(tf.stop_gradient(maximum))

    def evaluate(self, critic, real, fake, stream):
        """The weighted penalty, evaluated now (no lazy skipping)."""
        norms = self.gradient_norms(critic, self.penalty_points(real, fake, stream))
        self.record(norms)
        return self.weight * self.penalty_from_norms(norms)

    def get_config(self):
        config = super().get_config()
        config.update(
            weight=self.weight,
            sampling=self.sampling,
            noise_std=self.noise_std,
            norm=self.norm,
            interval=self.interval,
        )
        return config
