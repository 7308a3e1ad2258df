"""WGAN with the relativistic pairing loss: the generator step pairs its samples with real ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.models.helpers import mlp
from tflip.models.wgan import generator_gradients


def linear(inputs, outputs, kernel):
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs, use_bias=False)])
    model.set_weights([np.asarray(kernel, "float32")])
    return model


def softplus(x):
    return np.log1p(np.exp(x))


def test_generator_step_pairs_fakes_with_reals_closed_form(rng):
    # f(x) = w.x, G(z) = A z: loss = mean softplus(w.r_i - w.A z_i); d/dA = -mean sigmoid(.) w z_i^T.
    w, a = rng.normal(size=(2, 1)), rng.normal(size=(3, 2))
    critic, generator = linear(2, 1, w), linear(3, 2, a)
    latent, real = rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(6, 2)).astype("float32")
    loss_fn = tflip.losses.GAN_LOSSES["relativistic_pairing"][1]
    gradients, loss, _ = generator_gradients(
        generator, critic, keras.optimizers.SGD(), loss_fn, tf.constant(latent), real=tf.constant(real)
    )
    difference = (real @ w - latent @ a @ w)[:, 0]
    np.testing.assert_allclose(loss, softplus(difference).mean(), rtol=1e-5)
    sigmoid = 1.0 / (1.0 + np.exp(-difference))
    expected = -(sigmoid[:, None, None] * latent[:, :, None] * w[:, 0][None, None, :]).mean(0)
    np.testing.assert_allclose(gradients[0], expected, rtol=1e-4, atol=1e-6)


def test_wgan_trains_with_the_relativistic_loss_and_r1_r2():
    gan = tflip.models.WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, n_critic=2, loss="relativistic_pairing",
                            penalty=tflip.penalties.get("r1r2", weight=1.0))
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    data = tflip.datasets.eight_gaussians(256, seed=0)
    before = [np.array(w) for w in gan.generator.weights]
    history = gan.fit(data, batch_size=64, epochs=1, verbose=0, shuffle=False).history
    assert all(np.all(np.isfinite(v)) for v in history.values())
    assert any(np.abs(np.array(w) - b).max() > 0 for w, b in zip(gan.generator.weights, before))
    # softplus(d) > 0 and close to log 2 while the critic barely separates the samples.
    assert 0.0 < history["generator_loss"][-1] < 2.0


def test_relativistic_loss_refuses_a_separate_generator_batch():
    with pytest.raises(ValueError, match="generator_batch_size"):
        tflip.models.WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, loss="relativistic_pairing", generator_batch_size=8)
