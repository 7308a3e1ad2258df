"""PowerIterationRefresh / converge_power_vector: exact inference norms after fast training (explicit-matrix SVD)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import mirrored_strategy
from tflip.callbacks import PowerIterationRefresh
from tflip.layers import SpectralNormConv2D, SpectralNormDense
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


def test_without_refresh_fast_training_leaves_layers_above_their_constant():
    """The failure the callback fixes (one power-iteration step per call lags a fast-moving kernel)."""
    model = make_model()
    fit(model, [])
    assert max(inference_gains(model)) > 1.001


def test_refresh_during_and_after_fit():
    model = make_model()
    callback = PowerIterationRefresh(every_n_batches=4)
    fit(model, [callback])
    np.testing.assert_allclose(inference_gains(model), 1.0, rtol=1e-5)
    # Start, after batches 4, 8 and 12 of 3 epochs x 4 batches, and the end.
    assert callback.refreshes == 5
    assert set(callback.report) == {layer.path for layer in normalized_layers(model)}
    assert all(gain >= 1.0 - 1e-5 for gain in callback.report.values())


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
