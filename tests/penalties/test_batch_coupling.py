"""Penalties warn about critics whose BatchNormalization couples the samples of a batch."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflip.gradients import input_gradients
from tflip.penalties import (
    AdversarialLipschitzPenalty,
    GradientPenalty,
    LipschitzPenalty,
    MaxGradientAugmentedLagrangian,
    MaxGradientPenalty,
)
from tflip.penalties.base import batch_coupling_layers

BATCH_PENALTIES = (GradientPenalty, LipschitzPenalty, MaxGradientPenalty, MaxGradientAugmentedLagrangian,
                   AdversarialLipschitzPenalty)


def critic(normalization=None):
    layers = [keras.Input((3,)), keras.layers.Dense(8, activation="tanh")]
    if normalization is not None:
        layers.append(normalization)
    return keras.Sequential(layers + [keras.layers.Dense(1)])


def data(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


def test_batch_norm_makes_the_batch_sum_gradient_differ_from_each_samples_gradient():
    """Why the warning exists: the penalty's gradient (of the batch sum) is not the Jacobian diagonal."""
    real, _ = data()
    points = tf.constant(real)
    for model, coupled in ((critic(keras.layers.BatchNormalization()), True), (critic(), False)):
        with tf.GradientTape() as tape:
            tape.watch(points)
            values = model(points, training=True)[:, 0]
        jacobian = tape.jacobian(values, points).numpy()  # (n, n, 3): d f_i / d x_j
        own = jacobian[np.arange(len(real)), np.arange(len(real))]
        batch_sum = input_gradients(model, points).numpy()
        gap = np.max(np.abs(batch_sum - own)) / np.max(np.abs(own))
        if coupled:
            assert gap > 0.05, gap
        else:
            np.testing.assert_allclose(batch_sum, own, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("penalty_class", BATCH_PENALTIES)
def test_penalties_warn_on_batch_norm_critics(penalty_class):
    model = critic(keras.layers.BatchNormalization(name="bn"))
    real, fake = data()
    with pytest.warns(UserWarning, match=r"BatchNormalization layers \['bn'\].*LayerNormalization"):
        value = penalty_class()(model, real, fake)
    assert np.isfinite(float(value))


@pytest.mark.parametrize(
    "penalty_class, normalization",
    [(GradientPenalty, None), (LipschitzPenalty, "layer"), (MaxGradientPenalty, "frozen"),
     (AdversarialLipschitzPenalty, "layer")],
)
def test_no_warning_without_batch_coupling(penalty_class, normalization):
    layer = {
        None: None,
        "layer": keras.layers.LayerNormalization(),
        "frozen": keras.layers.BatchNormalization(trainable=False),
    }[normalization]
    model = critic(layer)
    real, fake = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        penalty_class()(model, real, fake)


def test_batch_coupling_layers_finds_nested_trainable_batch_norms():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(name="inner_bn")])
    frozen = keras.layers.BatchNormalization(name="frozen_bn")
    frozen.trainable = False
    outer = keras.Sequential([keras.Input((3,)), inner, frozen, keras.layers.Dense(1)])
    assert batch_coupling_layers(outer) == ["inner_bn"]
    assert batch_coupling_layers(critic()) == []
