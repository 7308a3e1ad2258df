"""PowerIterationRefresh / converge_power_vector: exact inference norms after fast training (explicit-matrix SVD)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import mirrored_strategy
from tflip.callbacks import PowerIterationRefresh
from tflip.layers import SpectralNormConv2D, SpectralNormDense
from tflip.models import WGAN
from tflip.ops.conv import conv_matrix

LIPSCHITZ = 1.5


def exact_norm(layer, kernel):
    """The operator norm of `kernel` applied as `layer` applies it, by numpy's SVD of the explicit matrix."""
    kernel = np.asarray(kernel, "float64")
    if isinstance(layer, SpectralNormConv2D):
        return np.linalg.norm(conv_matrix(tf.constant(kernel), layer.geometry), 2)
    return np.linalg.norm(kernel, 2)


def normalized_layers(model):
    return [layer for layer in model.layers if isinstance(layer, (SpectralNormConv2D, SpectralNormDense))]


def inference_gains(model):
    """Each layer's true constant in inference mode divided by its nominal `lipschitz`."""
    return [exact_norm(layer, layer.effective_kernel(training=False)) / LIPSCHITZ for layer in normalized_layers(model)]


def make_model():
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        SpectralNormConv2D(6, 3, lipschitz=LIPSCHITZ, name="conv_same"),
        keras.layers.ReLU(),
        SpectralNormConv2D(4, 3, strides=2, padding="valid", lipschitz=LIPSCHITZ, name="conv_valid"),
        keras.layers.Flatten(),
        SpectralNormDense(3, lipschitz=LIPSCHITZ, name="dense"),
    ])


def data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 2)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


def fit(model, callbacks, epochs=3):
    # A large step makes the kernels move faster than one power-iteration step per call can follow.
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False)


def test_converge_power_vector_reports_the_true_gain_and_makes_inference_exact():
    model = make_model()
    for layer in normalized_layers(model):
        raw = layer.kernel.numpy()
        gain_before = exact_norm(layer, layer.effective_kernel(training=False)) / LIPSCHITZ
        stored, converged = layer.converge_power_vector()
        assert converged == pytest.approx(exact_norm(layer, raw), rel=1e-5)
        # The random initial vector under-estimates the norm: the layer was above its constant, by this factor.
        assert converged / stored == pytest.approx(gain_before, rel=1e-5)
        assert gain_before > 1.01
        assert exact_norm(layer, layer.effective_kernel(training=False)) / LIPSCHITZ == pytest.approx(1.0, rel=1e-5)
        np.testing.assert_array_equal(layer.kernel.numpy(), raw)  # the raw kernel is never overwritten


def test_one_power_step_lags_a_kernel_change_and_the_refresh_restores_the_norm():
    """The mechanism: after the kernel moves, one power step from the old vector under-estimates the norm."""
    layer = SpectralNormConv2D(6, 3, lipschitz=LIPSCHITZ, power_iterations=1)
    x = tf.random.normal((2, 8, 8, 2))
    layer(x, training=True)
    layer.converge_power_vector()
    assert exact_norm(layer, layer.effective_kernel(training=False)) / LIPSCHITZ == pytest.approx(1.0, rel=1e-5)
    # A large step on one output channel moves the top singular vector away from the stored one.
    layer.kernel.assign(layer.kernel * np.array([1.0, 1.0, 1.0, 1.0, 1.0, 3.0], "float32"))
    layer(x, training=True)  # one training call: one power step
    lagging = exact_norm(layer, layer.effective_kernel(training=False)) / LIPSCHITZ
    assert lagging > 1.01
    report = PowerIterationRefresh().refresh(keras.Sequential([keras.Input((8, 8, 2)), layer]))
    assert report[layer.path] == pytest.approx(lagging, rel=1e-4)
    assert exact_norm(layer, layer.effective_kernel(training=False)) / LIPSCHITZ == pytest.approx(1.0, rel=1e-5)


def test_refresh_during_and_after_fit():
    model = make_model()
    callback = PowerIterationRefresh(every_n_batches=4)
    fit(model, [callback])
    np.testing.assert_allclose(inference_gains(model), 1.0, rtol=1e-5)
    # Start, after batches 4, 8 and 12 of 3 epochs x 4 batches, and the end.
    assert callback.refreshes == 5
    assert [batches for batches, _ in callback.history] == [0, 4, 8, 12, 12]
    assert set(callback.report) == {layer.path for layer in normalized_layers(model)}
    # Before each refresh the stored vectors under-estimated the norms (gains >= 1); the first one replaced the
    # random initial vectors, far off.
    assert all(gain >= 1.0 - 1e-5 for _, report in callback.history for gain in report.values())
    assert max(callback.history[0][1].values()) > 1.1


def test_small_inputs_nested_models_and_custom_layers():
    """Input spaces smaller than the iteration block, a WGAN's nested critic, a layer inside a custom layer."""

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = SpectralNormDense(4, lipschitz=LIPSCHITZ, name="inner")

        def call(self, x, training=None):
            return self.inner(x, training=training)

    critic = keras.Sequential([keras.Input((2,)), SpectralNormDense(3, lipschitz=LIPSCHITZ, name="tiny"), Block(),
                               SpectralNormDense(1, lipschitz=LIPSCHITZ, name="head")])
    generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    gan = WGAN(generator, critic, latent_dim=4)
    report = PowerIterationRefresh().refresh(gan)
    assert {path.split("/")[-1] for path in report} == {"tiny", "inner", "head"}
    for layer in (critic.get_layer("tiny"), critic.layers[1].inner, critic.get_layer("head")):
        assert exact_norm(layer, layer.effective_kernel(training=False)) == pytest.approx(LIPSCHITZ, rel=1e-5)


def test_model_built_by_its_first_step_is_refreshed_after_it():
    model = keras.Sequential([keras.layers.Flatten(), SpectralNormDense(3, lipschitz=LIPSCHITZ, name="dense")])
    callback = PowerIterationRefresh()
    fit(model, [callback], epochs=1)
    # Nothing was built at the start; the first batch built the layer and the refresh after it found it.
    assert [batches for batches, _ in callback.history] == [0, 1, 4]
    assert callback.history[0][1] == {} and list(callback.history[1][1]) == [model.layers[1].path]
    np.testing.assert_allclose(inference_gains(model), 1.0, rtol=1e-5)


def test_refresh_under_mirrored_strategy_keeps_replicas_identical():
    strategy = mirrored_strategy()
    with strategy.scope():
        model = make_model()
    PowerIterationRefresh().refresh(model)
    for layer in normalized_layers(model):
        replicas = [v.numpy() for v in strategy.experimental_local_results(layer.power_vector.value)]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])
    np.testing.assert_allclose(inference_gains(model), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs, name", [({"every_n_batches": 0}, "every_n_batches"),
                                          ({"every_n_batches": 2.5}, "every_n_batches"),
                                          ({"tolerance": -1.0}, "tolerance")])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PowerIterationRefresh(**kwargs)
