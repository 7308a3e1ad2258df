"""An exponential moving average of a generator's weights, kept beside the raw generator.

Karras et al. (2018, "Progressive growing of GANs", section A.1; 2020,
StyleGAN2, appendix B) and Yazici et al. (2019, "The unusual effectiveness of
averaging in GAN training") sample and evaluate from

    G_ema_t = beta * G_ema_{t-1} + (1 - beta) * G_t

after each generator step t, while training continues on the raw weights
G_t. StyleGAN2 specifies beta by a half-life in images:
beta = 0.5 ** (images per step / half-life).

Why not Keras' optimizer EMA (`Optimizer(use_ema=True)`): it keeps the
averages inside the optimizer and evaluates them by swapping them into the
model (`ema_overwrite_frequency`, `SwapEMAWeights`, and
`finalize_variable_values` at the end of `fit`, which `fit` calls on
`model.optimizer`), so sampling from the average while training goes on means
swapping weights in and out around every evaluation; it averages only the
variables the optimizer updates (no batch-norm statistics), starts from the
weights after the first step rather than from the initial ones, and has one
fixed momentum (no half-life in images, no start step). Here the average is a
separate generator, `ema_generator`, built from the raw generator's config:
`generate`, the callbacks and any user code call it like the raw generator.
"""

import keras
import tensorflow as tf

from tflip import _validation
from tflip._replica import replica_info


def ema_settings(decay, half_life, start):
    """Validates the EMA arguments of `WGAN`.

    Args:
        decay: beta in [0, 1), or None.
        half_life: half-life in generated images (> 0), or None.
        start: generator steps (>= 0) during which the average copies the
            raw weights.

    Returns:
        `(decay, half_life, start)` as (float or None, float or None, int).

    Raises:
        ValueError: naming `ema_decay`, `ema_half_life` or `ema_start`.
    """
    if decay is not None and half_life is not None:
        raise ValueError(
            f"Give one of `ema_decay` ({decay!r}) and `ema_half_life` ({half_life!r}), not both: the half-life "
            "determines the decay."
        )
    if decay is not None:
        decay = _validation.non_negative_number("ema_decay", decay)
        if not decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {decay!r}.")
    if half_life is not None:
        half_life = _validation.positive_number("ema_half_life", half_life)
    start = _validation.non_negative_int("ema_start", start)
    return decay, half_life, start


def clone_generator(generator, latent_dim):
    """A built, non-trainable copy of `generator` (same config, same weight values).

    Create it in the distribution strategy scope of the model that owns it.
    """
    try:
        average = keras.models.clone_model(generator)
    except Exception as error:  # noqa: BLE001 - any failure means the generator cannot be rebuilt from its config
        raise ValueError(
            f"The generator EMA needs a copy of the `generator` built from its config, which failed: {error}"
        ) from error
    if not average.built:
        average.build((None, latent_dim))
    average.trainable = False
    pairs = variable_pairs(average, generator)
    for copy, raw, _ in pairs:
        copy.assign(raw)
    return average


def variable_pairs(average, generator):
    """`(average variable, raw variable, averaged)` for each weight of `generator`.

    Trainable weights are averaged; non-trainable state (batch-norm moving
    statistics, power-iteration vectors, frozen layers) is copied, as
    StyleGAN2 and PyTorch-StudioGAN copy buffers. Per-replica caches
    (`synchronization="on_read"`, e.g. tflip's cached inference kernels) are
    skipped: each layer recomputes its cache when its sources change.
    Weights are matched by position (the copy has the same layers in the
    same order) and checked by shape.
    """
    raw_weights, average_weights = generator.weights, average.weights
    if len(raw_weights) != len(average_weights):
        raise ValueError(
            f"The `generator` has {len(raw_weights)} weights but its EMA copy {len(average_weights)}: "
            "rebuild the WGAN after changing the generator."
        )
    pairs = []
    for copy, raw in zip(average_weights, raw_weights):
        if tuple(copy.shape) != tuple(raw.shape):
            raise ValueError(f"EMA copy of generator weight {raw.path} has shape {copy.shape}, not {raw.shape}.")
        if getattr(raw, "synchronization", "auto") == "on_read":
            continue
        pairs.append((copy, raw, bool(raw.trainable)))
    return pairs


def step_decay(decay, half_life, start, step, images_per_replica):
    """beta of the update after generator step `step` (1 for the first step), a float32 scalar.

    `decay`, or `0.5 ** (images / half_life)` with `images` the global number
    of generated images of the step (per-replica batch x replicas: full
    batches); 0 (a copy) while `step <= start`.
    """
    if half_life is not None:
        _, num_replicas = replica_info()
        images = tf.cast(images_per_replica, tf.float64) * num_replicas
        beta = tf.pow(tf.constant(0.5, tf.float64), images / half_life)
    else:
        beta = tf.constant(decay, tf.float64)
    beta = tf.where(tf.cast(step, tf.int64) <= start, tf.constant(0.0, tf.float64), beta)
    return tf.cast(beta, tf.float32)


def update_average(pairs, beta):
    """`average <- raw + beta * (average - raw)` for averaged pairs, `average <- raw` for the others.

    Runs in a cross-replica `merge_call`, where `strategy.extended.update`
    writes each mirrored copy from its own replica's values (the raw weights
    are identical on all replicas after the optimizer step), the way Keras'
    optimizers update variables.
    """

    def update_all(strategy, beta):
        def update(average, raw, beta, averaged):
            raw = tf.cast(raw, average.dtype)
            if not averaged:
                return average.assign(raw)
            beta = tf.cast(beta, average.dtype)
            return average.assign(raw + beta * (average - raw))

        for average, raw, averaged in pairs:
            strategy.extended.update(
                average.value, update, args=(raw.value, beta), kwargs={"averaged": averaged}, group=False
            )

    context = tf.distribute.get_replica_context()
    if context is None:
        update_all(tf.distribute.get_strategy(), beta)
    else:
        context.merge_call(update_all, args=(beta,))
