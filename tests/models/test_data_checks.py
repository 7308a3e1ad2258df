"""Bad inputs fail before training: non-finite real batches, mismatched models and data."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.models.helpers import adam, mlp, toy_gan
from tflip.datasets import eight_gaussians
from tflip.models import WGAN, WassersteinCritic

BATCH = 64
DATA = eight_gaussians(BATCH * 4, seed=0)


def weights(model):
    return [np.asarray(w) for w in model.weights]


def assert_same(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


class WeightsAfterEachBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(weights(self.model))


@pytest.mark.parametrize("run_eagerly", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_real_batch_is_an_error_before_any_update(run_eagerly, bad):
    data = DATA.copy()
    data[2 * BATCH + 7, 0] = bad  # row 7 of batch 2
    gan = toy_gan("gp")
    gan.compile(adam(), adam(), run_eagerly=run_eagerly)
    record = WeightsAfterEachBatch()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"(?s)real samples contain NaN or Inf: first at row.*\b7\b.*train step.*\b2\b"):
        gan.fit(data, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=[record])
    assert len(record.seen) == 2
    # Every variable (weights, optimizer slots, random and penalty counters)
    # is as the last good batch left it.
    assert_same(record.seen[-1], weights(gan))
    assert all(np.isfinite(w).all() for w in weights(gan))


def test_check_finite_false_trains_on_non_finite_data():
    data = DATA.copy()
    data[5, 1] = np.nan
    gan = toy_gan("gp", check_finite=False)
    gan.compile(adam(), adam())
    gan.fit(data, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    # The NaN reaches the gradient penalty's gradients, hence every critic update.
    assert not all(np.isfinite(w).all() for w in weights(gan.critic))
    config = json.loads(json.dumps(gan.get_config()))
    assert config["check_finite"] is False and WGAN.from_config(config).check_finite is False


def test_wasserstein_critic_checks_both_sources():
    p, q = DATA.copy(), DATA + 1.0
    q[BATCH + 3, 1] = np.inf
    estimator = WassersteinCritic(mlp(2, 1), penalty="lp")
    estimator.compile(keras.optimizers.Adam(1e-3))
    record = WeightsAfterEachBatch()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)samples of Q contain NaN or Inf.*\b3\b"):
        estimator.fit(p, q, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=[record])
    assert_same(record.seen[-1], weights(estimator))
    assert WassersteinCritic.from_config(WassersteinCritic(mlp(2, 1), check_finite=False).get_config()).check_finite \
        is False


@pytest.mark.parametrize(
    "make", [lambda: toy_gan(check_finite=1), lambda: WassersteinCritic(mlp(2, 1), check_finite=None)]
)
def test_check_finite_must_be_a_bool(make):
    with pytest.raises(ValueError, match="check_finite"):
        make()


def conv_generator(latent_dim=2):
    return keras.Sequential([keras.Input((latent_dim,)), keras.layers.Dense(16), keras.layers.Reshape((4, 4, 1))])


@pytest.mark.parametrize(
    "make, names",
    [
        # latent_dim against the generator's input
        (lambda: WGAN(mlp(3, 2), mlp(2, 1), latent_dim=2), ["`latent_dim`=2", "`generator`", r"\(None, 3\)"]),
        # the generator's output against the critic's input
        (lambda: WGAN(mlp(2, 3), mlp(2, 1), latent_dim=2), ["`generator`", r"\(None, 3\)", "`critic`",
                                                            r"\(None, 2\)"]),
        (lambda: WGAN(conv_generator(), mlp(16, 1), latent_dim=2), ["`generator`", r"\(None, 4, 4, 1\)",
                                                                    "`critic`", r"\(None, 16\)"]),
    ],
)
def test_mismatched_models_are_rejected_at_build(make, names):
    with pytest.raises(ValueError) as error:
        make()
    for name in names:
        assert error.match(name)


def test_critic_without_input_is_checked_against_the_generator_when_fit_builds_it():
    critic = keras.Sequential([keras.layers.Dense(8, "relu"), keras.layers.Dense(1)])
    gan = WGAN(mlp(2, 3), critic, latent_dim=2)
    gan.compile(adam(), adam())
    generator_weights = weights(gan.generator)
    with pytest.raises(ValueError, match=r"`generator`'s output shape \(None, 3\).*\(None, 2\).*`critic`"):
        gan.fit(DATA, batch_size=BATCH, epochs=1, verbose=0)
    assert not gan.built and not critic.built
    assert_same(generator_weights, weights(gan.generator))


def test_generator_without_input_is_checked_against_latent_dim():
    generator = keras.Sequential([keras.layers.Dense(8, "relu"), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"`generator`'s output shape \(None, 3\).*`critic`'s input shape"):
        WGAN(generator, mlp(2, 1), latent_dim=5)


@pytest.mark.parametrize("kind", ["numpy", "dataset", "validation"])
def test_data_of_the_wrong_shape_is_rejected_before_training(kind):
    gan = toy_gan("gp")
    gan.compile(adam(), adam())
    before = weights(gan)
    wrong = np.zeros((BATCH * 2, 3), "float32")
    arguments = {
        "numpy": dict(x=wrong, batch_size=BATCH),
        "dataset": dict(x=tf.data.Dataset.from_tensor_slices(wrong).batch(BATCH)),
        "validation": dict(x=DATA, batch_size=BATCH, validation_data=wrong),
    }[kind]
    source = "`validation_data`" if kind == "validation" else "`x` of `fit`"
    with pytest.raises(ValueError, match=rf"data \({source}\) have the batch shape \(None, 3\).*`critic` takes "
                                          r"inputs of shape \(None, 2\)"):
        gan.fit(epochs=1, verbose=0, **arguments)
    assert_same(before, weights(gan))
    assert gan.critic_optimizer.iterations.numpy() == 0


@pytest.mark.parametrize("kind", ["p", "q", "dataset_q", "validation_q", "unbuilt_q", "build"])
def test_wasserstein_critic_rejects_data_of_the_wrong_shape(kind):
    estimator = WassersteinCritic(mlp(2, 1))
    estimator.compile(keras.optimizers.SGD(0.01))
    before = weights(estimator)
    good, wrong = DATA, np.zeros((BATCH * 4, 3), "float32")
    source, shape = {
        "p": ("`x` of `fit`", 3),
        "q": (r"`y` of `fit` \(samples of Q\)", 3),
        "dataset_q": (r"`x` of `fit` \(samples of Q\)", 3),
        "validation_q": (r"`validation_data` \(samples of Q\)", 3),
        "unbuilt_q": (r"`y` of `fit` \(samples of Q\)", 3),  # checked against the shape P built it with
        "build": ("`input_shape` of `build`", 5),
    }[kind]
    expected = rf"data \({source}\) have the batch shape \(None, {shape}\).*`critic` takes inputs of shape \(None, 2\)"
    with pytest.raises(ValueError, match=expected):
        if kind == "p":
            estimator.fit(wrong, good, batch_size=BATCH, epochs=1, verbose=0)
        elif kind == "q":
            estimator.fit(good, wrong, batch_size=BATCH, epochs=1, verbose=0)
        elif kind == "dataset_q":
            estimator.fit(tf.data.Dataset.from_tensor_slices((good, wrong)).batch(BATCH), epochs=1, verbose=0)
        elif kind == "validation_q":
            estimator.fit(good, good, batch_size=BATCH, epochs=1, verbose=0, validation_data=(good, wrong))
        elif kind == "unbuilt_q":
            critic = keras.Sequential([keras.layers.Dense(8, "relu"), keras.layers.Dense(1)])
            estimator = WassersteinCritic(critic)
            estimator.compile(keras.optimizers.SGD(0.01))
            estimator.fit(good, wrong, batch_size=BATCH, epochs=1, verbose=0)
        else:
            WassersteinCritic(mlp(2, 1)).build((None, 5))
    if kind not in ("unbuilt_q", "build"):
        assert_same(before, weights(estimator))
        assert estimator.optimizer.iterations.numpy() == 0
