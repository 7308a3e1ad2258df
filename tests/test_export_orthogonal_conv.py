"""to_plain_keras for OrthogonalConv2D: zero padding becomes a Conv2D, circular padding a small functional model of
built-in Cropping2D / Concatenate / Conv2D layers; same outputs, SavedModel, and a .keras file that loads without
tflip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.export_checks import all_layers, outputs_in_fresh_process
from tflip.export import to_plain_keras
from tflip.layers import OrthogonalConv2D


def orthogonal_critic(padding):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        OrthogonalConv2D(12, 3, strides=2, padding=padding, name="down"),
        keras.layers.ReLU(),
        OrthogonalConv2D(12, 2, padding=padding, lipschitz=0.5, name="second"),
        OrthogonalConv2D(5, 1, padding=padding, use_bias=False, name="mix"),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])
    x = np.random.default_rng(0).standard_normal((6, 8, 8, 3)).astype("float32")
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, np.ones((6, 1)), epochs=2, batch_size=3, verbose=0)  # raw weights away from their init
    return model, x


@pytest.mark.parametrize("padding", ["circular", "same"])
def test_same_outputs_and_savedmodel(padding, tmp_path):
    model, x = orthogonal_critic(padding)
    expected = np.asarray(model(x, training=False))
    before = [np.array(w) for w in model.weights]
    plain = to_plain_keras(model)
    np.testing.assert_allclose(plain(x, training=False), expected, atol=1e-5)
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-5)
    assert not any(isinstance(layer, OrthogonalConv2D) for layer in all_layers(plain))
    assert all(layer.__module__.startswith("keras") for layer in all_layers(plain))
    assert [layer.name for layer in plain.layers] == [layer.name for layer in model.layers]
    for weight in plain.weights:
        assert weight.dtype == "float32"
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    plain.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(tf.constant(x)), expected, atol=1e-5)


def test_circular_export_reloads_in_a_fresh_process_without_tflip(tmp_path):
    model, x = orthogonal_critic("circular")
    expected = np.asarray(model(x))
    np.testing.assert_allclose(outputs_in_fresh_process(to_plain_keras(model), x, tmp_path), expected, atol=1e-5)


def test_mixed_precision_export_keeps_float32_kernels():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((6, 6, 2)), OrthogonalConv2D(4, 3)])
        x = np.random.default_rng(3).standard_normal((2, 6, 6, 2)).astype("float32")
        model(x, training=True)
        plain = to_plain_keras(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for weight in plain.weights:
        assert weight.dtype == "float32"
    np.testing.assert_allclose(np.asarray(plain(x), np.float32), np.asarray(model(x), np.float32), atol=1e-6)
    conv = plain.layers[0].get_layer("conv")
    np.testing.assert_array_equal(np.asarray(conv.kernel), np.asarray(model.layers[0].inference_kernel()))
