"""One critic update, shared by `WGAN` and `WassersteinCritic`."""

import warnings

import keras
import tensorflow as tf

from tflip import _compat
from tflip._replica import safe_mean, scale_loss_for_replicas
from tflip.gradients import critic_values


class CriticMetrics:
    """The Mean trackers every critic-training model logs."""

    def __init__(self):
        self.critic_loss = keras.metrics.Mean(name="critic_loss")
        self.wasserstein = keras.metrics.Mean(name="wasserstein")
        self.penalty = keras.metrics.Mean(name="penalty")

    def as_list(self):
        return [self.critic_loss, self.wasserstein, self.penalty]


def batch_shape_of(x, required=True, element=0):
    """The batch shape `(None, ...)` of `fit`'s `x`: an array, a tensor or a dataset.

    For a dataset of tuples, the shape of the tuple's `element` (None if it
    has none). For other inputs (generators, `PyDataset`s): a `ValueError` if
    `required`, else None.
    """
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if isinstance(spec, (tuple, list)):
            if element >= len(spec):
                return None
            spec = spec[element]
        elif element:
            return None
        return (None,) + tuple(spec.shape[1:])
    if element:
        return None
    if hasattr(x, "shape"):
        return (None,) + tuple(x.shape[1:])
    if not required:
        return None
    raise ValueError(
        f"Cannot infer the sample shape from `x` of type {type(x).__name__}: give the critic an "
        "`keras.Input` or call `model.build((None,) + sample_shape)` before `fit`."
    )


def model_input_shape(model):
    """The declared input shape `(batch, ...)` of a model with one `keras.Input`, else None."""
    inputs = getattr(model, "inputs", None) if model.built else None
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape)


def model_output_shape(model, input_shape):
    """The output shape of a built model for inputs of `input_shape`, or None if it cannot tell."""
    outputs = getattr(model, "outputs", None)
    if outputs and len(outputs) == 1:
        return tuple(outputs[0].shape)
    try:
        return tuple(model.compute_output_spec(keras.KerasTensor(input_shape)).shape)
    except Exception:  # noqa: BLE001 - a model that cannot run symbolically fails at its first call instead
        return None


def shapes_match(actual, expected):
    """Whether two batch shapes agree past the batch axis (None matches any size)."""
    actual, expected = tuple(actual)[1:], tuple(expected)[1:]
    return len(actual) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(actual, expected)
    )


class BuildOnFitMixin:
    """Builds a model whose sub-models have no `keras.Input` from `fit`'s data."""

    def fit(self, x=None, *args, **kwargs):
        if not self.built and x is not None:
            # Inside the strategy scope the model was created in, so that the
            # state variables are distributed like the model's.
            with self.distribute_strategy.scope():
                self.build(batch_shape_of(x))
        elif x is not None:
            self.check_sample_shape(batch_shape_of(x, required=False), "`x` of `fit`")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)):
            validation = validation[0] if validation else None
        if validation is not None and self.built:
            self.check_sample_shape(batch_shape_of(validation, required=False), "`validation_data`")
        return super().fit(x, *args, **kwargs)

    def check_sample_shape(self, batch_shape, source):
        """Raises a `ValueError` if samples of `batch_shape` do not fit the `critic`.

        Called by `build` and by `fit` on a built model, before anything
        runs. The expected shape, `_sample_shape`, is set by `build`: the
        critic's declared input or the build shape.

        Args:
            batch_shape: `(batch, ...)` of the data, or None (unknown: no check).
            source: where the data come from ("`x` of `fit`"), for the message.
        """
        expected = getattr(self, "_sample_shape", None)
        if batch_shape is None or expected is None or shapes_match(tuple(batch_shape), expected):
            return
        raise ValueError(
            f"The data ({source}) have the batch shape {tuple(batch_shape)}, but the `critic` takes inputs of "
            f"shape {expected}."
        )

    def build_from_config(self, config):
        # Keras Tuner reloads checkpoints into models it has already built:
        # building twice would add variables to a locked model.
        if self.built:
            return
        super().build_from_config(config)


def check_finite_samples(samples, step, description):
    """`samples`, computed only after asserting that every entry is finite.

    One `is_finite` pass and two reductions over the batch: the first
    non-finite row is located with an `argmin` over the per-row results
    rather than in a branch, so the check adds no control flow to the step.
    Every update of the step depends on the returned tensor, so a failing
    check stops the step before any weight changes. Integer samples cannot
    be non-finite and pass through.

    Args:
        samples: a batch (this replica's share under a distribution strategy).
        step: the index of the train step, reported in the error.
        description: what the samples are, for the error ("real samples").

    Raises:
        tf.errors.InvalidArgumentError: "<description> contain NaN or Inf",
            with the first such row of the batch (of this replica's share)
            and the step, when the step runs.
    """
    samples = tf.convert_to_tensor(samples)
    if not samples.dtype.is_floating:
        return samples
    rows = tf.reshape(samples, [tf.shape(samples)[0], -1])
    finite = tf.reduce_all(tf.math.is_finite(rows), axis=1)
    # The appended True keeps argmin defined on an empty share.
    first = tf.argmin(tf.cast(tf.concat([finite, [True]], axis=0), tf.int32))
    check = tf.debugging.Assert(
        tf.reduce_all(finite),
        [f"{description} contain NaN or Inf: first at row", first, "of the batch of train step", step,
         "(check the data, or pass check_finite=False to the model to train on it anyway)"],
    )
    with tf.control_dependencies([check]):
        return tf.identity(samples)


_KERAS_COMPILE_ARGUMENTS = {"run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


def keras_compile_arguments(kwargs, reason):
    """The `keras.Model.compile` arguments these models accept, with their defaults.

    `jit_compile` means what it means in Keras (True: the whole `train_step`
    compiled with XLA; "auto": Keras decides) but defaults to False, because
    XLA compiles assertions away (the `check_finite` check then does not run)
    and draws other random numbers than TensorFlow's kernels for the same
    seed (a compiled run is deterministic but not bitwise equal to an eager
    one).

    Args:
        kwargs: the extra keyword arguments given to `compile`.
        reason: why other arguments (`loss`, `metrics`) are refused.

    Raises:
        ValueError: naming an unexpected argument or a bad `jit_compile`.
    """
    unexpected = set(kwargs) - set(_KERAS_COMPILE_ARGUMENTS)
    if unexpected:
        raise ValueError(f"Unexpected compile arguments {sorted(unexpected)}: {reason}.")
    arguments = dict(_KERAS_COMPILE_ARGUMENTS, **kwargs)
    if arguments["jit_compile"] not in (True, False, "auto"):
        raise ValueError(f"`jit_compile` must be True, False or 'auto', got {arguments['jit_compile']!r}.")
    return arguments


def warn_if_check_compiled_away(model):
    """Warns after `compile` when XLA will drop the model's `check_finite` assertion.

    Reads Keras' resolved `model.jit_compile`, so that `"auto"` resolving to
    XLA (on a GPU) warns too.
    """
    if model.jit_compile and model.check_finite:
        warnings.warn(
            "jit_compile: XLA compiles assertions away, so the check that the real samples are finite "
            "(check_finite=True) does not run; pass check_finite=False to silence this warning.",
            UserWarning,
            stacklevel=3,
        )


def step_logs(metrics, strategy, loss):
    """The results of `metrics` as a `train_step` / `test_step` return value.

    `loss` (a metric) is logged a second time as `"loss"`: Keras' callbacks
    (`TerminateOnNaN`, `EarlyStopping`, `ReduceLROnPlateau`,
    `ModelCheckpoint`) read `loss` / `val_loss` by default.

    Under MultiWorkerMirroredStrategy Keras reduces step outputs with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars: the
    values are returned with shape (1,) there (and reduced back to scalars).
    """
    in_multi_worker = _compat.in_multi_worker_mode(strategy)
    logs = {"loss": loss.result()}
    logs.update((metric.name, metric.result()) for metric in metrics)
    if in_multi_worker:
        logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def optimizer_loss(optimizer, loss):
    """The loss to differentiate for one replica: mean loss / replicas, loss-scaled.

    Keras sums gradients over replicas, hence the division; under mixed
    precision the `LossScaleOptimizer` scales here and unscales in `apply`.
    Call it inside the gradient tape.
    """
    return optimizer.scale_loss(scale_loss_for_replicas(loss))


def critic_gradients(critic, optimizer, penalty, critic_loss_fn, real, fake, seed=None):
    """Gradients of one critic step: the part that only reads the critic's weights.

    Minimizes `critic_loss_fn(f(real), f(fake)) + penalty(critic, real, fake)`;
    `seed` seeds the penalty's draws (default: the penalty's own counter).

    Returns:
        `(gradients, total_loss, penalty_value, wasserstein)` where
        `wasserstein = mean f(real) - mean f(fake)`.
    """
    variables = critic.trainable_variables
    with tf.GradientTape() as tape:
        real_values = critic_values(critic, real)
        fake_values = critic_values(critic, fake)
        loss = critic_loss_fn(real_values, fake_values)
        penalty_value = (
            tf.constant(0.0) if penalty is None
            else penalty(critic, real, fake, seed=seed, values=(real_values, fake_values))
        )
        total = loss + penalty_value
        scaled = optimizer_loss(optimizer, total)
    wasserstein = safe_mean(real_values) - safe_mean(fake_values)
    return tape.gradient(scaled, variables), total, penalty_value, wasserstein


def critic_update(critic, optimizer, penalty, critic_loss_fn, real, fake, metrics, seed=None):
    """One optimizer step of the critic on a real and a fake batch.

    Computes `critic_gradients`, applies them, runs the penalty's post-update
    hook and records the unscaled loss, the penalty and the Wasserstein
    estimate.
    """
    gradients, total, penalty_value, wasserstein = critic_gradients(
        critic, optimizer, penalty, critic_loss_fn, real, fake, seed
    )
    optimizer.apply(gradients, critic.trainable_variables)
    if penalty is not None:
        penalty.after_critic_update(critic)
    metrics.critic_loss.update_state(total)
    metrics.penalty.update_state(penalty_value)
    metrics.wasserstein.update_state(wasserstein)
