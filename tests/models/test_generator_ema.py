"""Generator EMA of WGAN: numpy recurrence, sampling, saving, distribution, arguments."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.layer_checks import mirrored_strategy
from tests.models.helpers import adam, mlp, toy_gan
from tflip.callbacks import ExactWasserstein, SampleGrid
from tflip.datasets import eight_gaussians
from tflip.models import WGAN

DATA = eight_gaussians(64 * 6, seed=0)


def values(variables):
    return [np.asarray(v) for v in variables]


class RecordGeneratorWeights(keras.callbacks.Callback):
    """The generator's weights (trainable and not) after every train step."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(values(self.model.generator.weights))


def batch_norm_generator():
    # A frozen layer (copied, never averaged) and batch-norm statistics (copied).
    return keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(16, kernel_initializer=keras.initializers.GlorotUniform(0)),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Dense(16, "relu", kernel_initializer=keras.initializers.GlorotUniform(1), trainable=False),
        keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(2)),
    ])


@pytest.mark.parametrize(
    "options, generator_batch_size",
    [({"ema_decay": 0.8}, None), ({"ema_half_life": 100.0, "ema_start": 2}, None), ({"ema_half_life": 50}, 8)],
)
def test_average_equals_a_numpy_recurrence_over_the_raw_weights(options, generator_batch_size):
    gan = WGAN(batch_norm_generator(), mlp(2, 1, seed=10), latent_dim=2, penalty="lp", n_critic=2,
               generator_batch_size=generator_batch_size, **options)
    gan.compile(adam(), adam())
    initial = values(gan.generator.weights)
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in values(gan.ema_generator.weights)]),
                                  np.concatenate([w.ravel() for w in initial]))
    recorder = RecordGeneratorWeights()
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False, callbacks=[recorder])
    assert len(recorder.steps) == 6
    # Independent reference: the StyleGAN2 half-life rule in float64 on the generated images of a step
    # (the critic batch 64 / n_critic 2 = 32, or generator_batch_size).
    images = generator_batch_size or 32
    beta = options.get("ema_decay", 0.5 ** (images / options.get("ema_half_life", 1.0)))
    trainable = [w.trainable for w in gan.generator.weights]
    assert trainable.count(False) == 4  # moving mean, moving variance, the frozen kernel and bias
    expected = [w.astype("float64") for w in initial]
    for step, raw in enumerate(recorder.steps, start=1):
        decay = 0.0 if step <= options.get("ema_start", 0) else beta
        expected = [decay * e + (1 - decay) * r if averaged else r
                    for e, r, averaged in zip(expected, raw, trainable)]
    gaps = []
    for actual, wanted, raw, averaged in zip(values(gan.ema_generator.weights), expected, recorder.steps[-1],
                                             trainable):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-6)
        if averaged:
            gaps.append(np.max(np.abs(actual - raw)))
        else:
            np.testing.assert_array_equal(actual, raw)
    assert max(gaps) > 1e-3  # the average is far from the raw weights: the test can tell them apart
    assert not any(w.trainable for w in gan.ema_generator.weights)
    assert len(gan.trainable_variables) == len(gan.generator.trainable_variables) + len(
        gan.critic.trainable_variables)


def test_training_on_the_raw_weights_is_unchanged_by_the_average():
    runs = []
    for options in ({}, {"ema_decay": 0.9}):
        gan = toy_gan("alp", **options)
        gan.compile(adam(), adam())
        history = gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False).history
        runs.append((values(gan.generator.weights) + values(gan.critic.weights), history))
    (plain, plain_logs), (averaged, averaged_logs) = runs
    for a, b in zip(plain, averaged):
        np.testing.assert_array_equal(a, b)
    assert plain_logs == averaged_logs


def numpy_mlp(weights, latent):
    """The toy generator (Dense relu, Dense relu, Dense) in float64."""
    x = latent.astype("float64")
    for i in range(0, len(weights), 2):
        x = x @ weights[i] + weights[i + 1]
        if i + 2 < len(weights):
            x = np.maximum(x, 0.0)
    return x


def test_generate_and_callbacks_sample_from_the_average(tmp_path):
    gan = toy_gan("lp", ema_decay=0.5)
    gan.compile(adam(), adam())
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0)
    latent = np.random.default_rng(3).standard_normal((20, 2)).astype("float32")
    average = numpy_mlp(values(gan.ema_generator.weights), latent)
    raw = numpy_mlp(values(gan.generator.weights), latent)
    assert np.max(np.abs(average - raw)) > 1e-3
    np.testing.assert_allclose(gan.generate(20, seed=3, use_ema=True), average, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gan.generate(20, seed=3), average, rtol=1e-5, atol=1e-5)  # the default
    np.testing.assert_allclose(gan.generate(20, seed=3, use_ema=False), raw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gan(latent), raw, rtol=1e-5, atol=1e-5)  # call: the raw generator

    held_out = eight_gaussians(50, seed=1)
    for use_ema, expected in ((None, average), (True, average), (False, raw)):
        monitor = ExactWasserstein(held_out, seed=3, use_ema=use_ema)
        monitor.set_model(gan)
        latent_50 = np.random.default_rng(3).standard_normal((50, 2)).astype("float32")
        weights = gan.ema_generator.weights if expected is average else gan.generator.weights
        reference = tflip.metrics.wasserstein1_exact(numpy_mlp(values(weights), latent_50), held_out)
        assert monitor.evaluate() == pytest.approx(reference, rel=1e-4)

    image_gan = WGAN(keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, "tanh")]),
                     keras.Sequential([keras.Input((16,)), keras.layers.Dense(1)]), latent_dim=4, ema_decay=0.5)
    image_gan.ema_generator.layers[0].kernel.assign(image_gan.generator.layers[0].kernel * 0.5)
    latent_4 = np.random.default_rng(0).standard_normal((4, 4)).astype("float32")
    for use_ema, generator in ((None, image_gan.ema_generator), (False, image_gan.generator)):
        grid = SampleGrid(tmp_path / "logs", n=4, image_shape=(4, 4), use_ema=use_ema)
        grid.set_model(image_gan)
        np.testing.assert_allclose(grid.images()[..., 0], np.asarray(generator(latent_4)).reshape(4, 4, 4),
                                   rtol=1e-6)


def test_off_by_default_and_use_ema_without_average_is_an_error(tmp_path):
    gan = toy_gan("lp")
    assert gan.ema_generator is None and not gan.uses_ema
    assert gan.sampling_generator() is gan.generator
    with pytest.raises(ValueError, match="use_ema"):
        gan.generate(4, use_ema=True)
    with pytest.raises(ValueError, match="use_ema"):
        gan.generate(4, use_ema="yes")
    with pytest.raises(ValueError, match="use_ema"):
        ExactWasserstein(np.zeros((4, 2)), use_ema=1)
    grid = SampleGrid(tmp_path / "logs", use_ema=True)
    grid.set_model(gan)
    with pytest.raises(ValueError, match="use_ema"):
        grid.images()
    assert gan.get_config()["ema_decay"] is None and gan.get_config()["ema_half_life"] is None


def test_config_roundtrip():
    gan = toy_gan("lp", ema_half_life=1e4, ema_start=100)
    config = json.loads(json.dumps(gan.get_config()))
    restored = WGAN.from_config(config)
    assert (restored.ema_decay, restored.ema_half_life, restored.ema_start) == (None, 1e4, 100)
    assert json.loads(json.dumps(restored.get_config())) == config


@pytest.mark.parametrize(
    "options, argument",
    [
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
        ({"ema_decay": "0.9"}, "ema_decay"),
        ({"ema_half_life": 0}, "ema_half_life"),
        ({"ema_half_life": float("inf")}, "ema_half_life"),
        ({"ema_decay": 0.9, "ema_half_life": 10.0}, "ema_half_life"),
        ({"ema_decay": 0.9, "ema_start": -1}, "ema_start"),
        ({"ema_decay": 0.9, "ema_start": 1.5}, "ema_start"),
    ],
)
def test_bad_arguments(options, argument):
    with pytest.raises(ValueError, match=argument):
        WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, **options)


def test_save_load_restores_the_average_and_training_continues_identically(tmp_path):
    gan = toy_gan("lp", ema_half_life=200.0)
    gan.compile(adam(), adam())
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
    path = str(tmp_path / "gan.keras")
    gan.save(path)
    restored = keras.models.load_model(path)
    assert restored.ema_half_life == 200.0
    for a, b in zip(values(gan.ema_generator.weights), values(restored.ema_generator.weights)):
        np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(values(gan.ema_generator.weights)[0] - values(gan.generator.weights)[0])) > 1e-4
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
    restored.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(values(gan.weights), values(restored.weights)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_models_without_input_layers_get_their_average_at_fit():
    generator = keras.Sequential([keras.layers.Dense(16, "relu"), keras.layers.Dense(2)])
    critic = keras.Sequential([keras.layers.Dense(16, "relu"), keras.layers.Dense(1)])
    gan = WGAN(generator, critic, latent_dim=2, ema_decay=0.9)
    assert not gan.built
    with pytest.raises(ValueError, match="not built"):
        gan.sampling_generator()
    gan.compile(adam(), adam())
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0)
    assert len(gan.ema_generator.weights) == len(generator.weights) == 4
    assert gan.generate(3, seed=0).shape == (3, 2)


def test_mirrored_average_equals_single_device():
    def run(strategy):
        with strategy.scope():
            gan = toy_gan("gp", ema_half_life=100.0, ema_start=1)
            gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
        gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
        samples = gan.generate(16, seed=0)
        return values(gan.ema_generator.weights) + [samples], values(gan.generator.weights)

    single_average, single_raw = run(tf.distribute.get_strategy())
    mirrored_average, mirrored_raw = run(mirrored_strategy())
    # The half-life counts the global batch: a wrong image count (per replica) would change beta.
    for a, b in zip(single_average + single_raw, mirrored_average + mirrored_raw):
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert max(np.max(np.abs(a - r)) for a, r in zip(single_average, single_raw)) > 1e-4
