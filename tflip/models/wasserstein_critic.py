"""`WassersteinCritic`: critic-only training that estimates W1 between two sample sources."""

import keras
import tensorflow as tf

from tflip import penalties
from tflip._replica import safe_mean
from tflip.gradients import critic_values
from tflip.losses.adversarial import wasserstein_critic_loss
from tflip.models.critic_step import (
    BuildOnFitMixin,
    CriticMetrics,
    batch_shape_of,
    check_finite_samples,
    critic_update,
    keras_compile_arguments,
    model_input_shape,
    step_logs,
    warn_if_check_compiled_away,
)


@keras.saving.register_keras_serializable(package="tflip")
class WassersteinCritic(BuildOnFitMixin, keras.Model):
    """Estimates the Wasserstein-1 distance between P and Q by training a critic.

    Maximizes `mean f(p) - mean f(q)` over a Lipschitz critic f (Kantorovich-
    Rubinstein duality): the logged `wasserstein` converges to W1(P, Q) from
    below when f is 1-Lipschitz by construction (Björck / spectral / L-inf
    layers, `penalty=None`, Anil et al. section 7.1) or approximately so with
    a penalty (Zhou et al.'s fixed-distribution experiments).

    `fit(p_samples, q_samples, ...)` or a dataset of `(p_batch, q_batch)`
    pairs; `evaluate` on held-out pairs gives an unbiased estimate of the
    dual objective of the trained critic (a lower bound of W1 for a
    1-Lipschitz critic). Compile with one optimizer as any Keras model.

    Logged metrics: `loss` (the critic loss `mean f(q) - mean f(p)` plus the
    penalty, the value Keras' callbacks monitor by default; also logged as
    `critic_loss`), `wasserstein`, `penalty` and the penalty's diagnostics.
    Evaluation logs `loss` and `critic_loss` without the penalty (it needs
    input gradients and updates the penalty's state), that is
    `-wasserstein`, and `wasserstein`.

    Args:
        critic: a Keras model mapping samples to one value per sample.
        penalty: a `tflip.penalties.Penalty`, its name, or `None`. P plays
            the role of "real" and Q of "fake" in the penalty.
        check_finite: if True (default), each train step first checks that
            both batches are finite and raises
            `tf.errors.InvalidArgumentError` ("samples of P contain NaN or
            Inf", with the first such row and the step) before the update.
            False skips the check.
        **kwargs: passed to `keras.Model`.

    Example:

        >>> import keras, tflip
        >>> from tflip.layers import BjorckDense, GroupSort
        >>> critic = keras.Sequential([keras.Input((2,)), BjorckDense(64), GroupSort(2),
        ...                            BjorckDense(1)])
        >>> estimator = tflip.models.WassersteinCritic(critic)
        >>> estimator.compile(keras.optimizers.Adam(1e-3))
        >>> p, q = tflip.datasets.three_cones(4096)
        >>> history = estimator.fit(p, q, batch_size=256, epochs=1, verbose=0)
    """

    def __init__(self, critic, penalty=None, check_finite=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(critic, keras.Model):
            raise ValueError(f"`critic` must be a keras.Model, got {type(critic).__name__}.")
        self.critic = critic
        self.penalty = penalties.get(penalty)
        if not isinstance(check_finite, bool):
            raise ValueError(f"`check_finite` must be True or False, got {check_finite!r}.")
        self.check_finite = check_finite
        self.critic_metrics = CriticMetrics()
        if critic.built and getattr(critic, "inputs", None):
            self.build(tuple(critic.inputs[0].shape))

    def build(self, input_shape):
        """Builds the critic and the penalty state for samples of `input_shape`.

        Raises:
            ValueError: naming `critic` and both shapes when `input_shape`
                does not fit the critic's declared input.
        """
        input_shape = tuple(input_shape)
        self._sample_shape = model_input_shape(self.critic) or input_shape
        self.check_sample_shape(input_shape, "`input_shape` of `build`")
        if not self.critic.built:
            self.critic.build(input_shape)
        if self.penalty is not None and not self.penalty.built:
            self.penalty.build(input_shape)
        self.built = True
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            self.optimizer.build(self.critic.trainable_variables)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit` on samples of P (`x`) and Q (`y`), or a dataset of `(p, q)` pairs.

        Both sources (and both parts of `validation_data`) are checked
        against the critic's input shape before anything runs.

        Raises:
            ValueError: naming `critic` and the shapes of data that do not fit.
        """
        if x is not None and not self.built:
            with self.distribute_strategy.scope():
                self.build(batch_shape_of(x))
        # The base class checks `x` and the first part of `validation_data`; here the samples of Q.
        sources = [("`y` of `fit` (samples of Q)", batch_shape_of(y, required=False))]
        sources.append(("`x` of `fit` (samples of Q)", batch_shape_of(x, required=False, element=1)))
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) > 1:
            sources.append(("`validation_data` (samples of Q)", batch_shape_of(validation[1], required=False)))
        elif validation is not None:
            sources.append(("`validation_data` (samples of Q)",
                            batch_shape_of(validation, required=False, element=1)))
        for source, shape in sources:
            self.check_sample_shape(shape, source)
        return super().fit(x, y, *args, **kwargs)

    def compile(self, optimizer="adam", **kwargs):
        """Configures the optimizer.

        Args:
            optimizer: a Keras optimizer or its name.
            **kwargs: `run_eagerly`, `steps_per_execution` and `jit_compile`
                of `keras.Model.compile`, with Keras' meaning, but
                `jit_compile` defaults to False: see
                `tflip.models.critic_step.keras_compile_arguments`.
        """
        self._compile_arguments = keras_compile_arguments(kwargs, "the loss is fixed")
        super().compile(optimizer=optimizer, **self._compile_arguments)
        warn_if_check_compiled_away(self)
        if self.built:
            self.optimizer.build(self.critic.trainable_variables)

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {
            "optimizer": keras.saving.serialize_keras_object(self.optimizer),
            **self._compile_arguments,
        }

    def compile_from_config(self, config):
        config = dict(config)
        config["optimizer"] = keras.saving.deserialize_keras_object(config["optimizer"])
        self.compile(**config)

    @property
    def metrics(self):
        tracked = self.critic_metrics.as_list()
        if self.penalty is not None:
            tracked += self.penalty.metrics
        return tracked

    @staticmethod
    def _pair(data):
        p, q, _ = keras.utils.unpack_x_y_sample_weight(data)
        if q is None:
            raise ValueError("WassersteinCritic needs pairs: call fit(p_samples, q_samples) or give (p, q) batches.")
        return p, q

    def train_step(self, data):
        p, q = self._pair(data)
        if self.check_finite:
            step = self.optimizer.iterations
            p = check_finite_samples(p, step, "samples of P")
            q = check_finite_samples(q, step, "samples of Q")
        # Every op of the update waits for the checks, the penalty's counters
        # included: a failing step changes no variable.
        with tf.control_dependencies([p, q] if self.check_finite else []):
            critic_update(
                self.critic, self.optimizer, self.penalty, wasserstein_critic_loss, p, q, self.critic_metrics,
            )
        return step_logs(self.metrics, self.distribute_strategy, loss=self.critic_metrics.critic_loss)

    def test_step(self, data):
        p, q = self._pair(data)
        p_values, q_values = (critic_values(self.critic, samples, training=False) for samples in (p, q))
        metrics = self.critic_metrics
        metrics.critic_loss.update_state(wasserstein_critic_loss(p_values, q_values))
        metrics.wasserstein.update_state(safe_mean(p_values) - safe_mean(q_values))
        return step_logs([metrics.critic_loss, metrics.wasserstein], self.distribute_strategy,
                         loss=metrics.critic_loss)

    def call(self, x, training=False):
        """The critic's values."""
        return self.critic(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            critic=keras.saving.serialize_keras_object(self.critic),
            penalty=keras.saving.serialize_keras_object(self.penalty),
            check_finite=self.check_finite,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("critic", "penalty"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
