"""to_plain_keras: same outputs from built-in Keras layers, in every way a model is deployed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.export_checks import all_layers, outputs_in_fresh_process
from tflip._compat import functional_calls
from tflip.export import to_plain_keras
from tflip.layers import BjorckDense, GroupSort, LInfProjectedDense, SpectralNormConv2D, SpectralNormDense
from tflip.lipschitz import lipschitz_upper_bound

LARGE = keras.initializers.RandomNormal(stddev=1.0)
TFLIP_LINEAR = (BjorckDense, LInfProjectedDense, SpectralNormDense, SpectralNormConv2D)


def conv_critic():
    """Sequential conv critic: stride, valid padding, dilation, BatchNorm with trained statistics."""
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        SpectralNormConv2D(6, 3, strides=2, power_iterations=3),
        GroupSort(2),
        SpectralNormConv2D(4, 3, padding="valid", dilation_rate=1, lipschitz=0.5),
        keras.layers.Flatten(),
        BjorckDense(8, kernel_initializer=LARGE, inference_iterations=30),
        keras.layers.BatchNormalization(),
        LInfProjectedDense(4, kernel_initializer=LARGE, activation="relu"),
        SpectralNormDense(1, use_bias=False),
    ])
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 3)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, np.ones((16, 1)), epochs=2, batch_size=8, verbose=0)  # raw weights, BN statistics, power vectors
    return model, x


def branched_model():
    """Functional: a shared layer, Add and Concatenate branches, a nested Sequential."""
    inputs = keras.Input((6,))
    shared = BjorckDense(6, name="shared")
    a = shared(inputs)
    b = shared(GroupSort(2)(a))
    nested = keras.Sequential([keras.Input((6,)), LInfProjectedDense(5, kernel_initializer=LARGE), GroupSort(5)],
                              name="nested")
    merged = keras.layers.Concatenate()([keras.layers.Add()([a, b]), nested(inputs)])
    outputs = SpectralNormDense(2)(merged)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(1).standard_normal((7, 6)).astype("float32")
    model(x, training=True)
    return model, x


@pytest.mark.parametrize("build", [conv_critic, branched_model])
def test_same_outputs_from_plain_layers_and_original_untouched(build):
    model, x = build()
    expected = np.asarray(model(x, training=False))
    before = [np.array(w) for w in model.weights]  # including the inference caches filled above
    plain = to_plain_keras(model)
    np.testing.assert_allclose(plain(x, training=False), expected, atol=1e-5)
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-5)
    assert not any(isinstance(layer, TFLIP_LINEAR) for layer in all_layers(plain))
    assert any(isinstance(layer, TFLIP_LINEAR) for layer in all_layers(model))
    for weight in plain.weights:
        assert weight.dtype == "float32"
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert type(plain) is type(model)
    def names(m):
        return [layer.name for layer in m.layers if not isinstance(layer, keras.layers.InputLayer)]

    assert names(plain) == names(model)


def test_shared_layer_stays_shared():
    model, _ = branched_model()
    plain = to_plain_keras(model)
    shared = plain.get_layer("shared")
    assert type(shared) is keras.layers.Dense
    assert sum(operation is shared for operation, *_ in functional_calls(plain)) == 2


def test_bound_of_the_export_equals_the_original():
    model, _ = conv_critic()
    plain = to_plain_keras(model)
    for norm in (2, "inf"):
        original = lipschitz_upper_bound(model, norm)
        exported = lipschitz_upper_bound(plain, norm)
        assert abs(exported - original) <= 1e-3 * original, (norm, original, exported)


def test_export_follows_inference_settings():
    """Björck tightening (more inference iterations) is what the export holds."""
    layer = BjorckDense(6, inference_iterations=2, kernel_initializer=LARGE)
    model = keras.Sequential([keras.Input((6,)), layer])
    x = np.eye(6, dtype="float32")
    rough = np.asarray(to_plain_keras(model)(x))
    layer.inference_iterations = 60
    exact = np.asarray(to_plain_keras(model)(x)) - np.asarray(layer.bias)
    u, _, vt = np.linalg.svd(np.asarray(layer.kernel, np.float64))
    np.testing.assert_allclose(exact, u @ vt, atol=1e-5)
    assert np.abs(rough - np.asarray(layer.bias) - exact).max() > 1e-3


def test_keras_file_reloads_in_a_fresh_process_without_tflip(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 2)), SpectralNormConv2D(3, 3), keras.layers.ReLU(), keras.layers.Flatten(),
        BjorckDense(5), LInfProjectedDense(2),
    ])
    x = np.random.default_rng(2).standard_normal((3, 8, 8, 2)).astype("float32")
    model(x, training=True)
    expected = np.asarray(model(x))
    np.testing.assert_allclose(outputs_in_fresh_process(to_plain_keras(model), x, tmp_path), expected, atol=1e-5)


def test_savedmodel_and_tflite_serve_the_same_outputs(tmp_path):
    model, x = conv_critic()
    expected = np.asarray(model(x, training=False))
    plain = to_plain_keras(model)
    plain.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(tf.constant(x)), expected, atol=1e-5)

    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), expected,
                               atol=1e-5)


def test_mixed_precision_export_keeps_float32_kernels():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = keras.Sequential([keras.Input((6,)), BjorckDense(6), GroupSort(2), SpectralNormDense(3)])
    x = np.random.default_rng(3).standard_normal((4, 6)).astype("float32")
    model(x, training=True)
    plain = to_plain_keras(model)
    keras.mixed_precision.set_global_policy("float32")
    for weight in plain.weights:
        assert weight.dtype == "float32"
    assert plain.layers[0].compute_dtype == "float16"
    np.testing.assert_allclose(np.asarray(plain(x), np.float32), np.asarray(model(x), np.float32), atol=1e-6)
    np.testing.assert_allclose(np.asarray(plain.layers[0].kernel), np.asarray(model.layers[0].inference_kernel()))


def test_rejects_subclassed_and_unbuilt_models():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = BjorckDense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 2), "float32"))
    with pytest.raises(ValueError, match="`model`"):
        to_plain_keras(net)
    with pytest.raises(ValueError, match="`model`"):
        to_plain_keras(keras.Sequential([BjorckDense(2)]))
