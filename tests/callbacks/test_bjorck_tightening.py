"""BjorckTightening: more inference iterations at the end of training, error reported."""

import keras
import numpy as np
import pytest

from tests.models.helpers import adam
from tflip.callbacks import BjorckTightening
from tflip.layers import BjorckDense, GroupSort
from tflip.models import WGAN


def bjorck_model(inputs=8, outputs=4):
    return keras.Sequential([keras.Input((inputs,)), BjorckDense(16, iterations=2, inference_iterations=2),
                             GroupSort(2), BjorckDense(outputs, iterations=2, inference_iterations=2)])


def test_tightening_reduces_the_error_and_predict_uses_it(rng):
    model = bjorck_model()
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")
    model.predict(x, verbose=0)  # traces the predict function with 2 iterations
    callback = BjorckTightening(30, verbose=0)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert len(callback.report) == 2
    for before, after in callback.report.values():
        assert after < before and after < 1e-5
    first, second = model.layers[0], model.layers[2]
    assert first.inference_iterations == second.inference_iterations == 30
    # Reference with 30 Björck steps; GroupSort(2) sorts consecutive pairs.
    def reference(iterations):
        pairs = (x @ first.effective_kernel(iterations=iterations).numpy() + first.bias.numpy()).reshape(64, 8, 2)
        hidden = np.sort(pairs, axis=2).reshape(64, 16)
        return hidden @ second.effective_kernel(iterations=iterations).numpy() + second.bias.numpy()

    predicted = model.predict(x, verbose=0)
    np.testing.assert_allclose(predicted, reference(30), atol=1e-5)
    assert np.max(np.abs(predicted - reference(2))) > 1e-3  # the stale 2-step function is gone


def test_finds_the_critic_of_a_wgan_and_saves_the_setting(tmp_path):
    generator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8), keras.layers.Dense(8)])
    gan = WGAN(generator, bjorck_model(8, outputs=1), latent_dim=2, n_critic=1)
    gan.compile(adam(), adam())
    callback = BjorckTightening(25, verbose=0)
    gan.fit(np.random.default_rng(0).normal(size=(64, 8)).astype("float32"), batch_size=32, epochs=1, verbose=0,
            callbacks=[callback])
    assert len(callback.report) == 2
    path = str(tmp_path / "gan.keras")
    gan.save(path)
    restored = keras.models.load_model(path)
    assert restored.critic.layers[0].inference_iterations == 25


def test_bad_arguments():
    with pytest.raises(ValueError, match="`iterations`"):
        BjorckTightening(0)
